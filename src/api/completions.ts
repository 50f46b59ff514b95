import type { FastifyInstance, FastifyReply } from "fastify";
import { ServeError } from "../errors.ts";
import { rawPrompt, type Prompt } from "../model/prompt.ts";
import { choiceStream, type ChunkShape } from "./choice-stream.ts";
import { checkGeneration, checkQueue } from "./guards.ts";
import { appendCompletionLogprobs, emptyCompletionLogprobs, type CompletionLogprobs } from "./logprobs.ts";
import { checkPromptChars, checkPromptTokens } from "./prompt-limits.ts";
import { streamingPostSchema } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { CompletionRequest } from "./schemas.ts";
import { sendEventStream } from "./sse.ts";
import { attributeTokens, TokenTextAttribution } from "./token-text.ts";
import { checkCompletionParameters } from "./unsupported-params.ts";
import { echoPrompt, promptLogprobs, scorePromptsTokens, type PromptTokenLogprob } from "./prompt-logprobs.ts";

/** POST /v1/completions: raw prompts (text or token ids, one or a list), n choices each, echo;
 * through the generation service, shaped as text_completion objects. */

interface CompletionPrompt {
  prompt: Prompt;
  /** As sent (a text prompt); null for token ids. */
  sent: string | null;
  /** What echo returns. */
  text: string;
  /** Echo with logprobs: the prompt's tokens with log p(token | tokens before); the first has none. */
  logprobs: CompletionLogprobs | null;
  /** vLLM's prompt_logprobs (#18). */
  promptLogprobs: (Record<string, PromptTokenLogprob> | null)[] | null;
}

function toPromptList(app: FastifyInstance, prompt: CompletionRequest["prompt"]): CompletionPrompt[] {
  const list: (string | number[])[] =
    typeof prompt === "string"
      ? [prompt]
      : typeof prompt[0] === "number"
        ? [prompt as number[]]
        : (prompt as (string | number[])[]);
  const vocab = app.engine.info.vocabSize;
  checkPromptChars(
    app,
    list.reduce((n, p) => n + (typeof p === "string" ? p.length : 0), 0),
    "prompt",
  );
  return list.map((p, i) => {
    const param = list.length > 1 ? `prompt[${i}]` : "prompt";
    if (typeof p !== "string") checkPromptTokens(app, p.length, param);
    const ids = typeof p === "string" ? app.tokenizer.encode(p) : p;
    if (ids.length === 0) throw new ServeError("invalid_request", "The prompt is empty.", param);
    const bad = ids.find((t) => t >= vocab);
    if (bad !== undefined)
      throw new ServeError("invalid_request", `Token id ${bad} is outside the vocabulary (size ${vocab}).`, param);
    const sent = typeof p === "string" ? p : null;
    return {
      prompt: rawPrompt(ids, app.engine.info),
      sent,
      text: sent ?? app.tokenizer.decode(p as number[], false),
      logprobs: null,
      promptLogprobs: null,
    };
  });
}

/** The prompts' own token log-probs, by teacher-forced scoring of tokens 1.. after token 0: for
 * echo with logprobs (the top `echoTop` per position, each token's part of the echoed text) and
 * for vLLM's prompt_logprobs (the top `promptTop`). */
async function scorePrompts(
  app: FastifyInstance,
  reply: FastifyReply,
  prompts: CompletionPrompt[],
  echoTop: number | null,
  promptTop: number | null,
  asIds: boolean,
): Promise<void> {
  const results = await scorePromptsTokens(
    app,
    reply,
    prompts.map((p) => p.prompt.ids),
    Math.max(echoTop ?? 0, promptTop ?? 0),
  );
  prompts.forEach((p, j) => {
    const scored = results[j]!;
    if (promptTop !== null) p.promptLogprobs = promptLogprobs(p.prompt.ids, scored, promptTop, app.tokenizer, asIds);
    if (echoTop === null) return;
    const tokens = echoPrompt(p.sent, p.prompt.ids, app.tokenizer).pieces.map((text, i) => ({
      tokenId: p.prompt.ids[i]!,
      text,
      logprob: i === 0 ? null : scored[i - 1]!.logprob,
      top: i === 0 ? null : (scored[i - 1]!.top ?? []).slice(0, echoTop),
    }));
    p.logprobs = emptyCompletionLogprobs();
    appendCompletionLogprobs(p.logprobs, tokens, app.tokenizer, 0, asIds);
  });
}

export async function completionsRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: CompletionRequest }>(
    "/v1/completions",
    {
      schema: streamingPostSchema("Create a text completion", "CompletionRequest", "Completion", "Completion"),
    },
    async (request, reply) => {
      const body = request.body;
      const n = checkGeneration(app, body);
      checkCompletionParameters(app, body); // #18: refused parameters
      const prompts = toPromptList(app, body.prompt);
      const info = app.engine.info;
      const echo = body.echo ?? false;
      // #18: echo the prompt as sent when the tokens' texts line up with it (prompt-logprobs.ts).
      if (echo) for (const p of prompts) p.text = echoPrompt(p.sent, p.prompt.ids, app.tokenizer).text;
      const logprobs = body.logprobs ?? null;
      const asIds = body.return_tokens_as_token_ids ?? false;
      const returnThoughts = body.reasoning?.return_thoughts ?? false;
      const sampled = prompts.map((p) => ({
        prompt: p.prompt,
        sampling: toSampling(
          body,
          budgetMaxTokens(info, p.prompt, { value: body.max_tokens, param: "max_tokens" }, "prompt"),
          { enabled: logprobs !== null, top: logprobs ?? 0 },
        ),
      }));
      const promptTop = body.prompt_logprobs ?? null;
      if ((echo && logprobs !== null) || promptTop !== null) {
        // Echoed prompts are scored first, as sequences of their own beside the choices.
        checkQueue(app, prompts.length * (n + 1), "prompt");
        await scorePrompts(app, reply, prompts, echo && logprobs !== null ? logprobs : null, promptTop, asIds);
      }
      const gen = app.generation.start({
        reply,
        idPrefix: "cmpl",
        prompts: sampled,
        n,
        latent: toLatent(info, body.reasoning, body.temperature),
        returnThoughts,
        sizeParam: "prompt",
      });
      const promptOf = (choice: number) => prompts[Math.floor(choice / n)]!;
      // Each choice's logprobs continue the echoed prompt's: text offsets count from its start.
      const offsets = Array.from({ length: gen.choices }, (_, i) => (echo ? promptOf(i).text.length : 0));
      const choiceLogprobs = (
        choice: number,
        tokens: Parameters<typeof appendCompletionLogprobs>[1],
        base: CompletionLogprobs = emptyCompletionLogprobs(),
      ) => {
        offsets[choice] = appendCompletionLogprobs(base, tokens, app.tokenizer, offsets[choice]!, asIds);
        return base;
      };

      if (body.stream) {
        // #18: each token's text as it lands in the returned text (held back with a possible stop string).
        const attrs = Array.from({ length: gen.choices }, () => new TokenTextAttribution(app.tokenizer));
        const shape: ChunkShape = {
          blank: { text: "", logprobs: null, finish_reason: null },
          opening: (i) =>
            echo ? [{ text: promptOf(i).text, logprobs: logprobs !== null ? promptOf(i).logprobs : null }] : [],
          text: (i, _, text, tokens) => {
            if (logprobs === null) return { text };
            // Text without tokens is the tail held back as a possible stop string: it completes them.
            return {
              text,
              logprobs: choiceLogprobs(
                i,
                tokens.length > 0 ? tokens.flatMap((t) => attrs[i]!.token(t)) : attrs[i]!.finish(text),
              ),
            };
          },
          finish: (i, reason, thoughts) => ({
            finish_reason: reason,
            thoughts,
            ...(logprobs !== null ? { logprobs: choiceLogprobs(i, attrs[i]!.finish("")) } : {}),
          }),
        };
        const includeUsage = body.stream_options?.include_usage ?? false;
        return sendEventStream(
          reply,
          choiceStream(gen, gen.head("text_completion"), shape, { includeUsage, thoughtVectors: returnThoughts }),
        );
      }
      const choices = await gen.collect();
      return {
        ...gen.head("text_completion"),
        choices: choices.map((c) => {
          const p = promptOf(c.index);
          const echoed = echo && p.logprobs ? structuredClone(p.logprobs) : undefined;
          return {
            index: c.index,
            text: (echo ? p.text : "") + c.text,
            logprobs:
              logprobs !== null
                ? choiceLogprobs(c.index, attributeTokens(c.tokens, c.text, app.tokenizer), echoed)
                : null,
            finish_reason: c.finishReason,
            ...(p.promptLogprobs ? { prompt_logprobs: p.promptLogprobs } : {}),
            thoughts: c.thoughts,
          };
        }),
        usage: gen.usage,
      };
    },
  );
}
