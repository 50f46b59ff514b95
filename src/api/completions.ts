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
import { attributeTokens, TokenTextAttribution } from "./token-text.ts";
import { checkCompletionParameters } from "./unsupported-params.ts";
import { echoPrompt, promptLogprobs, scorePromptTokens, type PromptTokenLogprob } from "./prompt-logprobs.ts";

/** POST /v1/completions: raw prompts (text or token ids, one or a list), n choices each, echo. */

interface Prompt {
  ids: number[];
  /** As sent (a text prompt), or the decoded ids. */
  sent: string | null;
  text: string;
  /** Echo with logprobs: the prompt's tokens with log p(token | tokens before); the first has none. */
  logprobs: CompletionLogprobs | null;
  /** vLLM's prompt_logprobs (#18). */
  promptLogprobs: (Record<string, PromptTokenLogprob> | null)[] | null;
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
    return { ids, sent: typeof p === "string" ? p : null, text: typeof p === "string" ? p : app.tokenizer.decode(p, false), logprobs: null, promptLogprobs: null };
  });
}

/** The prompt's own token log-probs (echo with logprobs: the top `echoTop` at each position,
 * offsets into the echoed text) and vLLM's prompt_logprobs, from one teacher-forced scoring. */
async function scorePrompt(app: FastifyInstance, id: string, p: Prompt, echoTop: number | null, promptTop: number | null): Promise<void> {
  const scored = await scorePromptTokens(app, id, p.ids, Math.max(echoTop ?? 0, promptTop ?? 0));
  if (promptTop !== null) p.promptLogprobs = promptLogprobs(p.ids, scored, promptTop, app.tokenizer);
  if (echoTop === null) return;
  const { pieces } = echoPrompt(p.sent, p.ids, app.tokenizer);
  const tokens = pieces.map((text, i) => ({
    text,
    logprob: i === 0 ? null : scored[i - 1]!.logprob,
    top: i === 0 ? null : (scored[i - 1]!.top ?? []).slice(0, echoTop),
  }));
  p.logprobs = emptyCompletionLogprobs();
  appendCompletionLogprobs(p.logprobs, tokens, app.tokenizer, 0);
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
      checkCompletionParameters(app, body); // #18: refused parameters
      const prompts = toPromptList(app, body.prompt);
      const echo = body.echo ?? false;
      // #18: echo the prompt as sent when the tokens' texts line up with it (prompt-logprobs.ts).
      if (echo) for (const p of prompts) p.text = echoPrompt(p.sent, p.ids, app.tokenizer).text;
      const logprobs = body.logprobs ?? null;
      const prompted = prompts.map((p) => {
        const maxTokens = budgetMaxTokens(info, p.ids, body.max_tokens, "prompt");
        const sampling = toSampling(body, maxTokens, { enabled: logprobs !== null, top: logprobs ?? 0 });
        return { promptIds: p.ids, sampling };
      });
      const promptTop = body.prompt_logprobs ?? null;
      const scoring = (echo && logprobs !== null) || promptTop !== null;
      checkQueue(app, prompts.length * n + (scoring ? prompts.length : 0), "prompt");

      const id = requestId("cmpl");
      const created = Math.floor(Date.now() / 1000);
      if (scoring) await Promise.all(prompts.map((p, i) => scorePrompt(app, `${id}-echo-${i}`, p, echo ? logprobs : null, promptTop)));
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
            appendCompletionLogprobs(lps, attributeTokens(c.tokens, c.text, app.tokenizer), app.tokenizer, prefix.length);
          }
          return {
            index: i,
            text: prefix + c.text,
            logprobs: lps,
            finish_reason: c.finish?.reason ?? null,
            ...(p.promptLogprobs ? { prompt_logprobs: p.promptLogprobs } : {}),
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
  // #18: each token's text as it lands in the returned text (held back with a possible stop string).
  const attrs = run.requests.map(() => new TokenTextAttribution(app.tokenizer));
  const lpsOf = (index: number, tokens: Parameters<typeof appendCompletionLogprobs>[1]) => {
    const lps = emptyCompletionLogprobs();
    offsets[index] = appendCompletionLogprobs(lps, tokens, app.tokenizer, offsets[index]!);
    return lps;
  };
  if (ctx.echo) {
    for (let i = 0; i < run.requests.length; i++) {
      const p = ctx.promptOf(i);
      yield chunk(i, { text: p.text, logprobs: ctx.logprobs ? p.logprobs : null });
    }
  }
  for await (const { choice: index, event: e } of run.events()) {
    if (e.type === "token") {
      if (e.text === "" && e.logprob === undefined) continue;
      const lps = e.logprob === undefined ? null : lpsOf(index, attrs[index]!.token({ ...e, logprob: e.logprob, top: e.topLogprobs ?? [] }));
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
      const lps = ctx.logprobs ? lpsOf(index, attrs[index]!.finish(e.tail)) : null;
      yield chunk(index, { text: e.tail, logprobs: lps, finish_reason: e.reason, thoughts: summary });
    } else if (e.type === "error") {
      throw engineErrorToServeError(e);
    }
  }
  if (run.abortReason === "timeout") throw timeoutError(timeoutMs);
  if (ctx.includeUsage) yield sseData({ ...ctx.head, choices: [], usage: usageOf(finishes, ctx.n) });
  yield SSE_DONE;
}
