import type { FastifyInstance } from "fastify";
import { ServeError } from "../errors.ts";
import {
  GenerationRun,
  collectChoices,
  engineErrorToServeError,
  requestId,
  spanOf,
  thoughtRecord,
  thoughtsSummary,
  WEIGHTS_VERSION_HEADER,
  type ThoughtRecord,
  timeoutError,
  usageOf,
  type FinishEvent,
} from "./generation.ts";
import { checkGeneration, checkLatentAvailable, checkQueue } from "./guards.ts";
import { encodeChat } from "./chat-prompt.ts";
import { chatLogprobs } from "./logprobs.ts";
import { checkPromptChars, messagesChars } from "./prompt-limits.ts";
import { ERROR_RESPONSES } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { ChatCompletionRequest } from "./schemas.ts";
import { SSE_DONE, sseContent, chunkEncoder, sendEventStream, sseData } from "./sse.ts";
import { encodeThought } from "./thoughts.ts";
import { attributeTokens, TokenTextAttribution } from "./token-text.ts";
import { checkChatParameters } from "./unsupported-params.ts";
import { promptLogprobs, scorePromptTokens } from "./prompt-logprobs.ts";

/** POST /v1/chat/completions: messages through the chat template (in the requested reasoning
 * mode), n choices, streamed or whole, with the NF-CoT `thoughts` of each choice. */

interface StreamContext {
  n: number;
  temperature: number;
  includeUsage: boolean;
  returnThoughts: boolean;
  logprobs: boolean;
}

export async function chatCompletionsRoutes(app: FastifyInstance): Promise<void> {
  const fingerprint = `nfcot-serve-${app.modelName}`;

  app.post<{ Body: ChatCompletionRequest }>(
    "/v1/chat/completions",
    {
      schema: {
        summary: "Create a chat completion",
        tags: ["OpenAI"],
        body: { $ref: "ChatCompletionRequest#" },
        response: {
          200: {
            description: "A chat.completion, or with stream: true an event stream of chat.completion.chunk objects.",
            content: {
              "application/json": { schema: { $ref: "ChatCompletion#" } },
              "text/event-stream": sseContent("ChatCompletionChunk"),
            },
          },
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const info = app.engine.info;
      const n = body.n ?? 1;
      checkGeneration(app, body.model, n);
      const mode = body.reasoning?.mode ?? info.defaultReasoningMode;
      if (mode === "latent") checkLatentAvailable(app, "reasoning.mode");
      if (!info.reasoningModes.includes(mode)) {
        throw new ServeError("invalid_request", `This model supports reasoning modes ${info.reasoningModes.join(", ")}.`, "reasoning.mode");
      }
      checkPromptChars(app, messagesChars(body.messages), "messages");
      const tools = checkChatParameters(app, body); // #18: refused parameters; tools for a template that reads them
      const promptIds = encodeChat(app, body.messages, { mode, kwargs: body.chat_template_kwargs ?? undefined, ...(tools ? { tools } : {}) });
      const requested = body.max_completion_tokens ?? body.max_tokens;
      const maxTokens = budgetMaxTokens(info, promptIds, requested, "messages");
      const promptLogprobsK = body.prompt_logprobs ?? null; // #18
      checkQueue(app, n + (promptLogprobsK !== null ? 1 : 0), "n");

      const logprobs = body.logprobs ?? false;
      const sampling = toSampling(body, maxTokens, { enabled: logprobs, top: body.top_logprobs ?? 0 });
      const latent = toLatent(info, body.reasoning);
      const id = requestId("chatcmpl");
      const created = Math.floor(Date.now() / 1000);
      const timeoutMs = app.config.requestTimeoutMs;
      // #18: vLLM's prompt_logprobs, scored before generating (the prompt is then prefix-cached).
      const promptLps = promptLogprobsK === null ? null : promptLogprobs(promptIds, await scorePromptTokens(app, `${id}-prompt`, promptIds, promptLogprobsK), promptLogprobsK, app.tokenizer);
      const run = new GenerationRun(app.engine, id, [{ promptIds, sampling }], n, latent, timeoutMs);
      run.abortOnClose(reply);
      const weightsVersion = run.weightsVersion;
      reply.header(WEIGHTS_VERSION_HEADER, weightsVersion);
      const head = { id, object: "chat.completion.chunk", created, model: app.modelName, system_fingerprint: fingerprint, weights_version: weightsVersion };
      const ctx: StreamContext = {
        n,
        temperature: latent.temperature,
        includeUsage: body.stream_options?.include_usage ?? false,
        returnThoughts: body.reasoning?.return_thoughts ?? false,
        logprobs,
      };
      if (body.stream) return sendEventStream(reply, streamChat(app, run, ctx, head, timeoutMs));

      const outs = await collectChoices(run, timeoutMs);
      const decoded = await app.traceDecoder.decode(outs.map((c) => spanOf(c.thoughts)));
      return {
        id,
        object: "chat.completion",
        created,
        model: app.modelName,
        system_fingerprint: fingerprint,
        weights_version: weightsVersion,
        choices: outs.map((c, i) => ({
          index: c.index,
          message: { role: "assistant", content: c.text, refusal: null },
          logprobs: logprobs ? { content: chatLogprobs(attributeTokens(c.tokens, c.text, app.tokenizer), app.tokenizer), refusal: null } : null,
          finish_reason: c.finish?.reason ?? null,
          thoughts: thoughtsSummary(c.thoughts, { vectors: ctx.returnThoughts, decoded: decoded[i], temperature: latent.temperature, flowLogDet: c.flowLogDet }),
        })),
        usage: usageOf(outs.map((c) => c.finish), n),
        ...(promptLps ? { prompt_logprobs: promptLps } : {}),
      };
    },
  );
}

/** Per choice: a role chunk, content and thought chunks as they come, a finish chunk carrying
 * the thoughts summary; then usage (when asked) and [DONE]. Thought chunks have an empty delta
 * and the thought in a field of the choice, which the SDKs pass through untouched. */
async function* streamChat(
  app: FastifyInstance,
  run: GenerationRun,
  ctx: StreamContext,
  head: Record<string, unknown>,
  timeoutMs: number,
): AsyncGenerator<string> {
  const encode = chunkEncoder(head, ctx.includeUsage ? { usage: null } : {});
  const chunk = (index: number, fields: Record<string, unknown>) =>
    encode({ index, delta: {}, logprobs: null, finish_reason: null, ...fields });
  const thoughts = run.requests.map((): ThoughtRecord[] => []);
  const flowLogDets = run.requests.map((): number | null => null);
  const finishes: (FinishEvent | null)[] = run.requests.map(() => null);
  // #18: each token's text as it lands in the content (held back with a possible stop string).
  const attrs = run.requests.map(() => new TokenTextAttribution(app.tokenizer));
  const lpOf = (tokens: Parameters<typeof chatLogprobs>[0]) => (ctx.logprobs ? { content: chatLogprobs(tokens, app.tokenizer), refusal: null } : null);
  for (let i = 0; i < run.requests.length; i++) yield chunk(i, { delta: { role: "assistant", content: "" } });

  for await (const { choice: index, event: e } of run.events()) {
    if (e.type === "token") {
      if (e.text === "" && e.logprob === undefined) continue;
      const lp = e.logprob === undefined ? null : lpOf(attrs[index]!.token({ ...e, logprob: e.logprob, top: e.topLogprobs ?? [] }));
      yield chunk(index, { delta: { content: e.text }, logprobs: lp });
    } else if (e.type === "thought") {
      thoughts[index]!.push(thoughtRecord(e));
      const thought = {
        index: e.index,
        log_prob: e.logProb,
        behaviour_log_prob: e.behaviourLogProb,
        ...(e.vector && ctx.returnThoughts ? { vector: encodeThought(e.vector) } : {}),
      };
      yield chunk(index, { thought });
    } else if (e.type === "flow") {
      flowLogDets[index] = e.logDet;
    } else if (e.type === "finish") {
      finishes[index] = e;
      const rest = ctx.logprobs ? attrs[index]!.finish(e.tail) : [];
      if (e.tail || rest.length > 0) yield chunk(index, { delta: { content: e.tail }, logprobs: lpOf(rest) });
      const [decoded] = await app.traceDecoder.decode([spanOf(thoughts[index]!)]);
      const summary = thoughtsSummary(thoughts[index]!, { vectors: false, decoded, temperature: ctx.temperature, flowLogDet: flowLogDets[index] });
      yield chunk(index, { finish_reason: e.reason, thoughts: summary });
    } else if (e.type === "error") {
      throw engineErrorToServeError(e);
    }
  }
  if (run.abortReason === "timeout") throw timeoutError(timeoutMs);
  if (ctx.includeUsage) yield sseData({ ...head, choices: [], usage: usageOf(finishes, ctx.n) });
  yield SSE_DONE;
}
