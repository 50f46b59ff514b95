import type { FastifyInstance, FastifyReply } from "fastify";
import { ServeError } from "../errors.ts";
import { rawPrompt, type Prompt } from "../model/prompt.ts";
import { choiceStream, type ChunkShape } from "./choice-stream.ts";
import { requestId } from "./generation.ts";
import { checkGeneration, checkQueue } from "./guards.ts";
import { appendCompletionLogprobs, emptyCompletionLogprobs, type CompletionLogprobs } from "./logprobs.ts";
import { checkPromptChars, checkPromptTokens } from "./prompt-limits.ts";
import { postSchema } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { CompletionRequest } from "./schemas.ts";
import { jsonOrEventStream, sendEventStream } from "./sse.ts";

/** POST /v1/completions: raw prompts (text or token ids, one or a list), n choices each, echo;
 * through the generation service, shaped as text_completion objects. */

interface CompletionPrompt {
  prompt: Prompt;
  text: string;
  /** Echo with logprobs: the prompt's tokens with log p(token | tokens before); the first has none. */
  logprobs: CompletionLogprobs | null;
}

function toPromptList(app: FastifyInstance, prompt: CompletionRequest["prompt"]): CompletionPrompt[] {
  const list: (string | number[])[] =
    typeof prompt === "string" ? [prompt] : typeof prompt[0] === "number" ? [prompt as number[]] : (prompt as (string | number[])[]);
  const vocab = app.engine.info.vocabSize;
  checkPromptChars(app, list.reduce((n, p) => n + (typeof p === "string" ? p.length : 0), 0), "prompt");
  return list.map((p, i) => {
    const param = list.length > 1 ? `prompt[${i}]` : "prompt";
    if (typeof p !== "string") checkPromptTokens(app, p.length, param);
    const ids = typeof p === "string" ? app.tokenizer.encode(p) : p;
    if (ids.length === 0) throw new ServeError("invalid_request", "The prompt is empty.", param);
    const bad = ids.find((t) => t >= vocab);
    if (bad !== undefined) throw new ServeError("invalid_request", `Token id ${bad} is outside the vocabulary (size ${vocab}).`, param);
    return { prompt: rawPrompt(ids, app.engine.info), text: typeof p === "string" ? p : app.tokenizer.decode(p, false), logprobs: null };
  });
}

/** The prompts' own token log-probs, by teacher-forced scoring of tokens 1.. after token 0. */
async function scorePrompts(app: FastifyInstance, reply: FastifyReply, prompts: CompletionPrompt[]): Promise<void> {
  const scored = prompts.filter((p) => p.prompt.ids.length > 1);
  const id = requestId("cmpl-echo");
  const results = await app.generation.score(
    reply,
    scored.map((p, i) => ({ kind: "score", id: `${id}-${i}`, promptIds: p.prompt.ids.slice(0, 1), thoughts: [], answerIds: p.prompt.ids.slice(1) })),
  );
  for (const p of prompts) {
    const ids = p.prompt.ids;
    const r = results[scored.indexOf(p)];
    const tokens = ids.map((tokenId, i) => ({
      tokenId,
      // The exact length of each token's text in the decoded prompt, from incremental decodes.
      text: app.tokenizer.decode(ids.slice(0, i + 1), false).slice(app.tokenizer.decode(ids.slice(0, i), false).length),
      logprob: i === 0 ? null : r!.answerLogprobs[i - 1]!.logprob,
      top: null,
    }));
    p.logprobs = emptyCompletionLogprobs();
    appendCompletionLogprobs(p.logprobs, tokens, app.tokenizer, 0);
  }
}

export async function completionsRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: CompletionRequest }>(
    "/v1/completions",
    {
      schema: postSchema("Create a text completion", "OpenAI", "CompletionRequest", jsonOrEventStream("A text_completion, or with stream: true an event stream of them.", "Completion", "Completion")),
    },
    async (request, reply) => {
      const body = request.body;
      const n = checkGeneration(app, body);
      const prompts = toPromptList(app, body.prompt);
      const info = app.engine.info;
      const echo = body.echo ?? false;
      const logprobs = body.logprobs ?? null;
      const returnThoughts = body.reasoning?.return_thoughts ?? false;
      const sampled = prompts.map((p) => ({
        prompt: p.prompt,
        sampling: toSampling(body, budgetMaxTokens(info, p.prompt, { value: body.max_tokens, param: "max_tokens" }, "prompt"), { enabled: logprobs !== null, top: logprobs ?? 0 }),
      }));
      if (echo && logprobs !== null) {
        // Echoed prompts are scored first, as sequences of their own beside the choices.
        checkQueue(app, prompts.length * (n + 1), "prompt");
        await scorePrompts(app, reply, prompts);
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
      const choiceLogprobs = (choice: number, tokens: Parameters<typeof appendCompletionLogprobs>[1], base: CompletionLogprobs = emptyCompletionLogprobs()) => {
        offsets[choice] = appendCompletionLogprobs(base, tokens, app.tokenizer, offsets[choice]!);
        return base;
      };

      if (body.stream) {
        const shape: ChunkShape = {
          blank: { text: "", logprobs: null, finish_reason: null },
          opening: (i) => (echo ? [{ text: promptOf(i).text, logprobs: logprobs !== null ? promptOf(i).logprobs : null }] : []),
          text: (i, _, text, tokens) => ({ text, logprobs: tokens.length ? choiceLogprobs(i, tokens) : null }),
          finish: (_, reason, thoughts) => ({ finish_reason: reason, thoughts }),
        };
        const includeUsage = body.stream_options?.include_usage ?? false;
        return sendEventStream(reply, choiceStream(gen, gen.head("text_completion"), shape, { includeUsage, thoughtVectors: returnThoughts }));
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
            logprobs: logprobs !== null ? choiceLogprobs(c.index, c.tokens, echoed) : null,
            finish_reason: c.finishReason,
            thoughts: c.thoughts,
          };
        }),
        usage: gen.usage,
      };
    },
  );
}
