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
import { checkGeneration, checkQueue } from "./guards.ts";
import { checkPromptChars, checkPromptTokens } from "./prompt-limits.ts";
import { appendCompletionLogprobs, emptyCompletionLogprobs, type CompletionLogprobs } from "./logprobs.ts";
import { ERROR_RESPONSES } from "./response-schemas.ts";
import { budgetMaxTokens, toLatent, toSampling } from "./sampling.ts";
import type { CompletionRequest } from "./schemas.ts";
import { SSE_DONE, sseContent, chunkEncoder, sendEventStream, sseData } from "./sse.ts";
import { encodeThought } from "./thoughts.ts";

/** POST /v1/completions: raw prompts (text or token ids, one or a list), n choices each, echo. */

interface Prompt {
  ids: number[];
  text: string;
  /** Echo with logprobs: the prompt's tokens with log p(token | tokens before); the first has none. */
  logprobs: CompletionLogprobs | null;
}

function toPromptList(app: FastifyInstance, prompt: CompletionRequest["prompt"]): Prompt[] {
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
    return { ids, text: typeof p === "string" ? p : app.tokenizer.decode(p, false), logprobs: null };
  });
}

/** The prompt's own token log-probs, by teacher-forced scoring of tokens 1.. after token 0. */
async function scorePrompt(app: FastifyInstance, id: string, p: Prompt): Promise<void> {
  const lps = emptyCompletionLogprobs();
  const scored = p.ids.length > 1 ? await app.engine.score({ kind: "score", id, promptIds: p.ids.slice(0, 1), thoughts: [], answerIds: p.ids.slice(1) }) : null;
  const tokens = p.ids.map((tokenId, i) => ({
    tokenId,
    // The exact length of each token's text in the decoded prompt, from incremental decodes.
    text: app.tokenizer.decode(p.ids.slice(0, i + 1), false).slice(app.tokenizer.decode(p.ids.slice(0, i), false).length),
    logprob: i === 0 ? null : scored!.answerLogprobs[i - 1]!.logprob,
    top: null,
  }));
  appendCompletionLogprobs(lps, tokens, app.tokenizer, 0);
  p.logprobs = lps;
}

export async function completionsRoutes(app: FastifyInstance): Promise<void> {
  const fingerprint = `nfcot-serve-${app.modelName}`;

  app.post<{ Body: CompletionRequest }>(
    "/v1/completions",
    {
      schema: {
        summary: "Create a text completion",
        tags: ["OpenAI"],
        body: { $ref: "CompletionRequest#" },
        response: {
          200: {
            description: "A text_completion, or with stream: true an event stream of them.",
            content: {
              "application/json": { schema: { $ref: "Completion#" } },
              "text/event-stream": sseContent("Completion"),
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
      const prompts = toPromptList(app, body.prompt);
      const echo = body.echo ?? false;
      const logprobs = body.logprobs ?? null;
      const prompted = prompts.map((p) => {
        const maxTokens = budgetMaxTokens(info, p.ids, body.max_tokens, "prompt");
        const sampling = toSampling(body, maxTokens, { enabled: logprobs !== null, top: logprobs ?? 0 });
        return { promptIds: p.ids, sampling };
      });
      const scoring = echo && logprobs !== null;
      checkQueue(app, prompts.length * n + (scoring ? prompts.length : 0), "prompt");

      const id = requestId("cmpl");
      const created = Math.floor(Date.now() / 1000);
      if (scoring) await Promise.all(prompts.map((p, i) => scorePrompt(app, `${id}-echo-${i}`, p)));
      const latent = toLatent(info, body.reasoning);
      const timeoutMs = app.config.requestTimeoutMs;
      const run = new GenerationRun(app.engine, id, prompted, n, latent, timeoutMs);
      run.abortOnClose(reply);
      const weightsVersion = run.weightsVersion;
      reply.header(WEIGHTS_VERSION_HEADER, weightsVersion);
      const head = { id, object: "text_completion", created, model: app.modelName, system_fingerprint: fingerprint, weights_version: weightsVersion };
      const promptOf = (choice: number) => prompts[Math.floor(choice / n)]!;
      const returnThoughts = body.reasoning?.return_thoughts ?? false;
      const ctx = { head, n, echo, returnThoughts, temperature: latent.temperature, logprobs: logprobs !== null, includeUsage: body.stream_options?.include_usage ?? false, promptOf };
      if (body.stream) return sendEventStream(reply, streamCompletion(run, ctx, timeoutMs, app));

      const outs = await collectChoices(run, timeoutMs);
      const decoded = await app.traceDecoder.decode(outs.map((c) => spanOf(c.thoughts)));
      return {
        ...head,
        choices: outs.map((c, i) => {
          const p = promptOf(i);
          const prefix = echo ? p.text : "";
          let lps: CompletionLogprobs | null = null;
          if (logprobs !== null) {
            lps = echo && p.logprobs ? structuredClone(p.logprobs) : emptyCompletionLogprobs();
            appendCompletionLogprobs(lps, c.tokens, app.tokenizer, prefix.length);
          }
          return {
            index: i,
            text: prefix + c.text,
            logprobs: lps,
            finish_reason: c.finish?.reason ?? null,
            thoughts: thoughtsSummary(c.thoughts, { vectors: returnThoughts, decoded: decoded[i], temperature: latent.temperature, flowLogDet: c.flowLogDet }),
          };
        }),
        usage: usageOf(outs.map((c) => c.finish), n),
      };
    },
  );
}

interface CompletionStreamContext {
  head: Record<string, unknown>;
  n: number;
  echo: boolean;
  returnThoughts: boolean;
  temperature: number;
  logprobs: boolean;
  includeUsage: boolean;
  promptOf: (choice: number) => Prompt;
}

async function* streamCompletion(
  run: GenerationRun,
  ctx: CompletionStreamContext,
  timeoutMs: number,
  app: FastifyInstance,
): AsyncGenerator<string> {
  const encode = chunkEncoder(ctx.head, ctx.includeUsage ? { usage: null } : {});
  const chunk = (index: number, fields: Record<string, unknown>) =>
    encode({ index, text: "", logprobs: null, finish_reason: null, ...fields });
  const offsets = run.requests.map((_, i) => (ctx.echo ? ctx.promptOf(i).text.length : 0));
  const thoughts = run.requests.map((): ThoughtRecord[] => []);
  const flowLogDets = run.requests.map((): number | null => null);
  const finishes: (FinishEvent | null)[] = run.requests.map(() => null);
  if (ctx.echo) {
    for (let i = 0; i < run.requests.length; i++) {
      const p = ctx.promptOf(i);
      yield chunk(i, { text: p.text, logprobs: ctx.logprobs ? p.logprobs : null });
    }
  }
  for await (const { choice: index, event: e } of run.events()) {
    if (e.type === "token") {
      if (e.text === "" && e.logprob === undefined) continue;
      let lps: CompletionLogprobs | null = null;
      if (e.logprob !== undefined) {
        lps = emptyCompletionLogprobs();
        offsets[index] = appendCompletionLogprobs(lps, [{ ...e, logprob: e.logprob, top: e.topLogprobs ?? [] }], app.tokenizer, offsets[index]!);
      }
      yield chunk(index, { text: e.text, logprobs: lps });
    } else if (e.type === "thought") {
      thoughts[index]!.push(thoughtRecord(e));
      const vector = e.vector && ctx.returnThoughts ? { vector: encodeThought(e.vector) } : {};
      yield chunk(index, { thought: { index: e.index, log_prob: e.logProb, behaviour_log_prob: e.behaviourLogProb, ...vector } });
    } else if (e.type === "flow") {
      flowLogDets[index] = e.logDet;
    } else if (e.type === "finish") {
      finishes[index] = e;
      const [decoded] = await app.traceDecoder.decode([spanOf(thoughts[index]!)]);
      const summary = thoughtsSummary(thoughts[index]!, { vectors: false, decoded, temperature: ctx.temperature, flowLogDet: flowLogDets[index] });
      yield chunk(index, { text: e.tail, finish_reason: e.reason, thoughts: summary });
    } else if (e.type === "error") {
      throw engineErrorToServeError(e);
    }
  }
  if (run.abortReason === "timeout") throw timeoutError(timeoutMs);
  if (ctx.includeUsage) yield sseData({ ...ctx.head, choices: [], usage: usageOf(finishes, ctx.n) });
  yield SSE_DONE;
}
