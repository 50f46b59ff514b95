import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import { replySplit } from "../model/model-info.ts";
import { encodeChat } from "./chat-prompt.ts";
import { choiceStream, type ChunkShape } from "./choice-stream.ts";
import { checkGeneration, checkLatentAvailable, checkQueue } from "./guards.ts";
import { chatLogprobs } from "./logprobs.ts";
import { checkPromptChars, messagesChars } from "./prompt-limits.ts";
import { streamingPostSchema } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { ChatCompletionRequest } from "./schemas.ts";
import { sendEventStream } from "./sse.ts";
import { attributeTokens, TokenTextAttribution } from "./token-text.ts";
import { checkChatParameters } from "./unsupported-params.ts";
import { promptLogprobs, scorePromptTokens } from "./prompt-logprobs.ts";

/** POST /v1/chat/completions: messages through the chat template (in the requested reasoning
 * mode) into the generation service; the answer shaped as a chat.completion or its chunks, with
 * the NF-CoT `thoughts` of each choice. */

export async function chatCompletionsRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: ChatCompletionRequest }>(
    "/v1/chat/completions",
    {
      schema: streamingPostSchema(
        "Create a chat completion",
        "ChatCompletionRequest",
        "ChatCompletion",
        "ChatCompletionChunk",
      ),
    },
    async (request, reply) => {
      const body = request.body;
      const n = checkGeneration(app, body);
      const info = app.engine.info;
      const mode = body.reasoning?.mode ?? info.defaultReasoningMode;
      if (mode === "latent") checkLatentAvailable(app, "reasoning.mode");
      if (!info.reasoningModes.includes(mode)) {
        throw new ServeError(
          "invalid_request",
          `This model supports reasoning modes ${info.reasoningModes.join(", ")}.`,
          "reasoning.mode",
        );
      }
      checkPromptChars(app, messagesChars(body.messages), "messages");
      const tools = checkChatParameters(app, body); // #18: refused parameters; tools for a template that reads them
      const prompt = encodeChat(app, body.messages, {
        mode,
        kwargs: body.chat_template_kwargs ?? undefined,
        ...(tools ? { tools } : {}),
      });
      const budget = body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
      const maxTokens = budgetMaxTokens(info, prompt, { value: body[budget], param: budget }, "messages");
      const logprobs = body.logprobs ?? false;
      const asIds = body.return_tokens_as_token_ids ?? false;
      const returnThoughts = body.reasoning?.return_thoughts ?? false;
      // A written trace (the model declares where it ends) or the decoded thoughts (latent, when
      // asked) go to reasoning_content; the answer alone to content.
      const reasoning = {
        split: replySplit(info, mode),
        decodedThoughts: mode === "latent" && returnThoughts && info.hasThoughtDecoder,
      };
      const sampling = toSampling(body, maxTokens, { enabled: logprobs, top: body.top_logprobs ?? 0 });
      // #18: vLLM's prompt_logprobs, scored before generating (a sequence of its own beside the choices).
      const k = body.prompt_logprobs ?? null;
      if (k !== null) checkQueue(app, n + 1, "n");
      const promptLps =
        k === null
          ? null
          : promptLogprobs(prompt.ids, await scorePromptTokens(app, reply, prompt.ids, k), k, app.tokenizer, asIds);
      const gen = app.generation.start({
        reply,
        idPrefix: "chatcmpl",
        prompts: [{ prompt, sampling }],
        n,
        latent: toLatent(info, body.reasoning, body.temperature),
        returnThoughts,
        sizeParam: "n",
        reasoning,
      });
      const lp = (tokens: Parameters<typeof chatLogprobs>[0]) => ({
        content: chatLogprobs(tokens, app.tokenizer, asIds),
        refusal: null,
      });

      if (body.stream) {
        // #18: each token's text as it lands in the content (held back with a possible stop string).
        const attrs = Array.from({ length: gen.choices }, () => new TokenTextAttribution(app.tokenizer));
        const shape: ChunkShape = {
          blank: { delta: {}, logprobs: null, finish_reason: null },
          opening: () => [{ delta: { role: "assistant", content: "" } }],
          text: (i, channel, text, tokens) => {
            if (channel === "reasoning") return { delta: { reasoning_content: text, reasoning: text } };
            // Text without tokens is the tail held back as a possible stop string: it completes them.
            const done = !logprobs
              ? []
              : tokens.length > 0
                ? tokens.flatMap((t) => attrs[i]!.token(t))
                : attrs[i]!.finish(text);
            return { delta: { content: text }, logprobs: done.length > 0 ? lp(done) : null };
          },
          finish: (i, reason, thoughts) => {
            const rest = logprobs ? attrs[i]!.finish("") : [];
            return { finish_reason: reason, thoughts, ...(rest.length > 0 ? { logprobs: lp(rest) } : {}) };
          },
        };
        const includeUsage = body.stream_options?.include_usage ?? false;
        return sendEventStream(
          reply,
          choiceStream(gen, gen.head("chat.completion.chunk"), shape, { includeUsage, thoughtVectors: returnThoughts }),
        );
      }
      const choices = await gen.collect();
      return {
        ...gen.head("chat.completion"),
        choices: choices.map((c) => ({
          index: c.index,
          message: {
            role: "assistant",
            content: c.text,
            reasoning_content: c.reasoning,
            reasoning: c.reasoning,
            refusal: null,
          },
          logprobs: logprobs ? lp(attributeTokens(c.tokens, c.text, app.tokenizer)) : null,
          finish_reason: c.finishReason,
          thoughts: c.thoughts,
        })),
        usage: gen.usage,
        ...(promptLps ? { prompt_logprobs: promptLps } : {}),
      };
    },
  );
}
