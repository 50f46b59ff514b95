import { randomBytes } from "node:crypto";
import type { FastifyReply } from "fastify";
import { RequestAborted } from "../engine/client.ts";
import type { EngineHandle, ScoreEvent } from "../engine/engine-handle.ts";
import type {
  EngineEvent,
  FinishReason,
  GenerateRequest,
  LatentParams,
  SamplingParams,
  ScoreRequest,
  TopLogprob,
} from "../engine/types.ts";
import { ServeError, isErrorCode } from "../errors.ts";
import type { ReasoningSplit } from "../model/manifest.ts";
import type { Prompt } from "../model/prompt.ts";
import { ReasoningSplitter, type Channel, type Routed } from "../model/reasoning-splitter.ts";
import { checkQueue } from "./guards.ts";
import type { ServeState } from "../http/serve-state.ts";
import {
  spanOf,
  thoughtRecord,
  thoughtsSummary,
  type ThoughtEvent,
  type ThoughtRecord,
  type ThoughtsSummary,
} from "./thoughts-summary.ts";
import type { TraceDecoder } from "./trace-decoder.ts";
import { usageOf, type FinishEvent, type Usage } from "./usage.ts";

/** The one generation path. Every route hands it rendered prompts and sampling parameters and
 * shapes what comes back: choice-level events (text, thought, finish with the thoughts summary)
 * and the usage. It owns what every route needs alike: n choices per prompt sharing the prompt's
 * KV, the weights-version header, cancellation (client gone, timeout, a failed reader), and
 * engine errors as typed ServeErrors. Scoring (teacher-forced) goes through it too. */

export const WEIGHTS_VERSION_HEADER = "x-weights-version";

export interface TokenOut {
  tokenId: number;
  text: string;
  /** The token's own detokenized text (token-text.ts attributes the content to tokens by it). */
  piece?: string | undefined;
  logprob: number;
  top: TopLogprob[];
}

export type ChoiceEvent =
  /** Text as the detokenizer released it, on its side of the reasoning split; `tokens`: its
   * tokens' logprobs when they were asked for (answer text only). */
  | { type: "text"; choice: number; channel: Channel; text: string; tokens: TokenOut[] }
  | { type: "thought"; choice: number; thought: ThoughtEvent }
  | { type: "finish"; choice: number; reason: FinishReason; thoughts: ThoughtsSummary };

/** What the engine's events become before a reader adds the finish's thoughts summary. */
type MergedEvent = Exclude<ChoiceEvent, { type: "finish" }> | { type: "finish"; choice: number; reason: FinishReason };

export interface ChoiceOutput {
  index: number;
  /** The answer (all text when the reply is not split). */
  text: string;
  /** The trace (explicit mode with a declared split) or the decoded thoughts (latent, when
   * asked); null when there is none. */
  reasoning: string | null;
  tokens: TokenOut[]; // the answer's, when logprobs were asked for
  finishReason: FinishReason | null;
  thoughts: ThoughtsSummary;
}

/** How a reply's reasoning is told apart from its answer. */
export interface ReasoningOutput {
  /** Explicit mode: the model's declared split of its text. */
  split: ReasoningSplit | null;
  /** Latent mode: the decoded thoughts as reasoning text (models with a thought decoder). */
  decodedThoughts: boolean;
}

export interface GenerationInput {
  reply: FastifyReply;
  /** The response id's prefix: chatcmpl, cmpl. */
  idPrefix: string;
  prompts: { prompt: Prompt; sampling: SamplingParams }[];
  n: number;
  latent: LatentParams;
  /** Non-streamed summaries carry the vectors (streams send them in thought chunks). */
  returnThoughts: boolean;
  /** The request field that sets how many sequences it needs (for the queue's 400). */
  sizeParam: string;
  /** Absent: all text is the answer (text completions). */
  reasoning?: ReasoningOutput;
}

interface ServiceDeps {
  engine: EngineHandle;
  traceDecoder: TraceDecoder;
  serveState: ServeState;
  config: { maxQueue: number; requestTimeoutMs: number };
  /** The name responses carry as `model`. */
  modelName: string;
}

/** OpenAI-style ids: prefix + 24 random base62-ish characters. */
export function requestId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export class GenerationService {
  constructor(private readonly deps: ServiceDeps) {}

  /** Admits and submits a request (429/400 when the queue can't take it); the events follow. */
  start(input: GenerationInput): Generation {
    checkQueue(this.deps, input.prompts.length * input.n, input.sizeParam);
    const gen = new Generation(this.deps, input);
    input.reply.header(WEIGHTS_VERSION_HEADER, gen.weightsVersion);
    return gen;
  }

  /** Teacher-forced scoring of several requests at once, aborted together when the client goes
   * away. An abort is not an engine failure: a client gone first is a 499, the drain deadline a
   * retryable 503 (another replica will score it). */
  async score(reply: FastifyReply, requests: ScoreRequest[]): Promise<ScoreEvent[]> {
    const { engine } = this.deps;
    let clientGone = false;
    reply.raw.once("close", () => {
      if (reply.raw.writableFinished) return;
      clientGone = true;
      for (const r of requests) engine.abort(r.id);
    });
    try {
      return await Promise.all(requests.map((r) => engine.score(r)));
    } catch (err) {
      for (const r of requests) engine.abort(r.id);
      if (!(err instanceof RequestAborted)) {
        const code = (err as { code?: string }).code;
        throw new ServeError(code && isErrorCode(code) ? code : "engine_error", (err as Error).message);
      }
      if (clientGone)
        throw new ServeError(
          "client_closed_request",
          "The client closed the connection before the request was scored.",
        );
      if (this.deps.serveState.draining) {
        throw new ServeError(
          "shutting_down",
          "The server is shutting down: scoring was stopped at the drain deadline. Retry; another replica will serve it.",
          null,
          5,
        );
      }
      throw new ServeError("engine_error", "The engine aborted the scoring request.");
    }
  }
}

/** One piece of text as the engine released it: a token's (with its logprob when asked), or the
 * tail held back as a possible stop-string prefix (no token). */
interface Piece {
  text: string;
  token: TokenOut | null;
  isToken: boolean;
}

interface ChoiceState {
  text: string;
  reasoning: string | null;
  tokens: TokenOut[];
  /** Text tokens on the reasoning side of the split (usage counts them as reasoning tokens). */
  reasoningTokens: number;
  splitter: ReasoningSplitter<Piece> | null;
  thoughts: ThoughtRecord[];
  flowLogDet: number | null;
  /** The decoded span, once asked for (undefined: not yet; a string or null after). */
  decoded: string | undefined | null;
  finish: FinishEvent | null;
}

/** One HTTP request's choices in the engine: n per prompt, choice i of a prompt following the
 * prompt's first choice (leaderId) so the prompt is computed once and shared through the prefix
 * cache. A choice with maxTokens 0 (echo-only completions) never reaches the engine. */
export class Generation {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly n: number;
  private readonly requests: GenerateRequest[];
  private readonly states: ChoiceState[];
  private readonly iterators: AsyncIterableIterator<EngineEvent>[];
  private readonly open = new Set<string>();
  private abortReason: "client" | "timeout" | "error" | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly deps: ServiceDeps,
    private readonly input: GenerationInput,
  ) {
    this.id = requestId(input.idPrefix);
    this.n = input.n;
    this.requests = input.prompts.flatMap(({ prompt, sampling }, p) =>
      Array.from(
        { length: input.n },
        (_, i): GenerateRequest => ({
          kind: "generate",
          id: `${this.id}-${p * input.n + i}`,
          promptIds: prompt.ids,
          opensLatentSpan: prompt.opensLatentSpan,
          ...(prompt.thoughts ? { promptThoughts: prompt.thoughts } : {}),
          sampling,
          latent: input.latent,
          choiceIndex: i,
          leaderId: i === 0 ? null : `${this.id}-${p * input.n}`,
        }),
      ),
    );
    const split = input.reasoning?.split ?? null;
    this.states = this.requests.map(() => ({
      text: "",
      reasoning: null,
      tokens: [],
      reasoningTokens: 0,
      splitter: split ? new ReasoningSplitter<Piece>(split, (p) => p.text) : null,
      thoughts: [],
      flowLogDet: null,
      decoded: undefined,
      finish: null,
    }));
    this.iterators = this.requests.map((r) => {
      if (r.sampling.maxTokens === 0) return nothingGenerated(r);
      this.open.add(r.id);
      return deps.engine.generate(r);
    });
    const timeoutMs = deps.config.requestTimeoutMs;
    if (timeoutMs > 0 && this.open.size > 0) this.timer = setTimeout(() => this.abort("timeout"), timeoutMs).unref();
    const reply = input.reply;
    reply.raw.once("close", () => {
      if (!reply.raw.writableFinished) this.abort("client");
    });
  }

  /** The weights that run this request (the engine handle stamps each request as it sends it). */
  get weightsVersion(): string {
    return this.requests.find((r) => r.weightsVersion !== undefined)?.weightsVersion ?? this.deps.engine.weightsVersion;
  }

  /** What every response object (and stream chunk) of this request starts with. */
  head(object: string): Record<string, unknown> {
    const model = this.deps.modelName;
    return {
      id: this.id,
      object,
      created: this.created,
      model,
      system_fingerprint: `nfcot-serve-${model}`,
      weights_version: this.weightsVersion,
    };
  }

  get choices(): number {
    return this.requests.length;
  }

  /** After the events have ended. Reasoning tokens: thoughts, and the trace's text tokens. */
  get usage(): Usage {
    return usageOf(
      this.states.map((s) => s.finish),
      this.n,
      this.states.map((s) => s.reasoningTokens),
    );
  }

  /** Every choice's events as they come; a finish carries the choice's thoughts summary (decoded
   * trace included, vectors not: those came in the thought events). With decoded thoughts as
   * reasoning, a full span's trace text follows its last thought. Throws a ServeError on an
   * engine error or the timeout. */
  async *events(): AsyncGenerator<ChoiceEvent> {
    const K = this.deps.engine.info.numThoughts;
    for await (const e of this.merged()) {
      const s = this.states[e.choice]!;
      if (e.type === "thought" && this.input.reasoning?.decodedThoughts && s.thoughts.length === K) {
        yield e;
        const text = await this.decoded(e.choice);
        if (text) {
          s.reasoning = text;
          yield { type: "text", choice: e.choice, channel: "reasoning", text, tokens: [] };
        }
      } else if (e.type === "finish") {
        const decoded = await this.decoded(e.choice);
        yield { ...e, thoughts: this.summary(e.choice, decoded ?? undefined, false) };
      } else yield e;
    }
  }

  /** Runs to the end and returns every choice (the traces decoded in one batch). */
  async collect(): Promise<ChoiceOutput[]> {
    for await (const _ of this.merged());
    const decoded = await this.deps.traceDecoder.decode(this.states.map((s) => spanOf(s.thoughts)));
    return this.states.map((s, i) => {
      if (this.input.reasoning?.decodedThoughts && decoded[i]) s.reasoning = decoded[i]!;
      return {
        index: i,
        text: s.text,
        reasoning: s.reasoning,
        tokens: s.tokens,
        finishReason: s.finish?.reason ?? null,
        thoughts: this.summary(i, decoded[i], this.input.returnThoughts),
      };
    });
  }

  /** The choice's span through the thought decoder, once. */
  private async decoded(choice: number): Promise<string | null> {
    const s = this.states[choice]!;
    if (s.decoded === undefined) s.decoded = (await this.deps.traceDecoder.decode([spanOf(s.thoughts)]))[0] ?? null;
    return s.decoded;
  }

  private summary(choice: number, decoded: string | undefined, vectors: boolean): ThoughtsSummary {
    const s = this.states[choice]!;
    return thoughtsSummary(s.thoughts, {
      vectors,
      decoded,
      temperature: this.input.latent.temperature,
      flowLogDet: s.flowLogDet,
    });
  }

  /** A piece of text through the choice's split (if any): the text events it releases, recorded. */
  private route(choice: number, piece: Piece | null): ChoiceEvent[] {
    const s = this.states[choice]!;
    const routed: Routed<Piece>[] = s.splitter
      ? piece
        ? s.splitter.push(piece)
        : s.splitter.finish()
      : piece
        ? [{ channel: "content", pieces: [piece], text: piece.text }]
        : [];
    const out: ChoiceEvent[] = [];
    for (const r of routed) {
      const tokens = r.channel === "content" ? r.pieces.flatMap((p) => (p.token ? [p.token] : [])) : [];
      if (r.channel === "reasoning") {
        s.reasoning = (s.reasoning ?? "") + r.text;
        s.reasoningTokens += r.pieces.filter((p) => p.isToken).length;
      } else {
        s.text += r.text;
        s.tokens.push(...tokens);
      }
      if (r.text !== "" || tokens.length > 0)
        out.push({ type: "text", choice, channel: r.channel, text: r.text, tokens });
    }
    return out;
  }

  private abort(reason: "client" | "timeout" | "error"): void {
    if (this.open.size === 0) return;
    this.abortReason ??= reason;
    for (const id of this.open) this.deps.engine.abort(id);
  }

  /** The engine's events of every choice, interleaved as they come, recorded in the choice's
   * state and turned into choice events (the reader adds the finish's thoughts summary, once);
   * engine errors and the timeout thrown as ServeErrors. */
  private async *merged(): AsyncGenerator<MergedEvent> {
    try {
      for await (const { choice, event: e } of interleave(this.iterators)) {
        const s = this.states[choice]!;
        if (e.type === "finish" || e.type === "error") this.open.delete(this.requests[choice]!.id);
        if (e.type === "error") throw new ServeError(isErrorCode(e.code) ? e.code : "engine_error", e.message);
        if (e.type === "token") {
          const token =
            e.logprob === undefined
              ? null
              : { tokenId: e.tokenId, text: e.text, piece: e.piece, logprob: e.logprob, top: e.topLogprobs ?? [] };
          yield* this.route(choice, { text: e.text, token, isToken: true });
        } else if (e.type === "thought") {
          s.thoughts.push(thoughtRecord(e));
          yield { type: "thought", choice, thought: e };
        } else if (e.type === "flow") s.flowLogDet = e.logDet;
        else if (e.type === "finish") {
          if (e.tail) yield* this.route(choice, { text: e.tail, token: null, isToken: false });
          yield* this.route(choice, null);
          s.finish = e;
          yield { type: "finish", choice, reason: e.reason };
        }
      }
      if (this.abortReason === "timeout") {
        throw new ServeError(
          "request_timeout",
          `The request did not finish within ${this.deps.config.requestTimeoutMs} ms and was aborted.`,
        );
      }
    } finally {
      // Reached early only when the reader stopped (error, client gone): free the engine's work.
      this.abort("error");
      if (this.timer) clearTimeout(this.timer);
    }
  }
}

/** Several choices' event streams as one, each event tagged with its choice. */
async function* interleave(
  iterators: AsyncIterableIterator<EngineEvent>[],
): AsyncGenerator<{ choice: number; event: EngineEvent }> {
  if (iterators.length === 1) {
    // The common case (n = 1): no merging, one promise per event.
    for await (const event of iterators[0]!) yield { choice: 0, event };
    return;
  }
  const pending = new Map<number, Promise<{ i: number; r: IteratorResult<EngineEvent> }>>();
  const pull = (i: number) =>
    pending.set(
      i,
      iterators[i]!.next().then((r) => ({ i, r })),
    );
  iterators.forEach((_, i) => pull(i));
  while (pending.size > 0) {
    const { i, r } = await Promise.race(pending.values());
    if (r.done) {
      pending.delete(i);
      continue;
    }
    if (r.value.type === "finish" || r.value.type === "error") pending.delete(i);
    else pull(i);
    yield { choice: i, event: r.value };
  }
}

async function* nothingGenerated(r: GenerateRequest): AsyncGenerator<EngineEvent> {
  yield {
    type: "finish",
    id: r.id,
    reason: "length",
    promptTokens: r.promptIds.length,
    completionTokens: 0,
    thoughts: 0,
    cachedTokens: 0,
    queueTimeMs: 0,
    tail: "",
  };
}
