import { randomBytes } from "node:crypto";
import type { FastifyReply } from "fastify";
import type { EngineHandle } from "../engine/engine-handle.ts";
import type { EngineEvent, GenerateRequest, LatentParams, SamplingParams, TopLogprob } from "../engine/types.ts";
import { ServeError, isErrorCode } from "../errors.ts";
import { encodeThought } from "./thoughts.ts";

/** One HTTP generation request as engine requests: n choices per prompt, their events merged,
 * aborted together (client gone, timeout, error), collected for non-streamed responses. */

export type FinishEvent = Extract<EngineEvent, { type: "finish" }>;
export type ErrorEvent = Extract<EngineEvent, { type: "error" }>;

export interface TokenOut {
  tokenId: number;
  text: string;
  piece?: string | undefined;
  logprob: number;
  top: TopLogprob[];
}

/** One sampled thought as the routes keep it. */
export interface ThoughtRecord {
  logProb: number;
  behaviourLogProb: number | null;
  vector?: Float32Array;
}

export function thoughtRecord(e: Extract<EngineEvent, { type: "thought" }>): ThoughtRecord {
  return { logProb: e.logProb, behaviourLogProb: e.behaviourLogProb, ...(e.vector ? { vector: e.vector } : {}) };
}

export interface ChoiceOutput {
  index: number;
  text: string;
  tokens: TokenOut[]; // filled when logprobs were asked for
  thoughts: ThoughtRecord[];
  /** The span's flow log-det, when asked for (flow event). */
  flowLogDet: number | null;
  finish: FinishEvent | null;
}

/** OpenAI-style ids: prefix + 24 random base62-ish characters. */
export function requestId(prefix: string): string {
  return `${prefix}-${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export class GenerationRun {
  readonly requests: GenerateRequest[];
  abortReason: "client" | "timeout" | "error" | null = null;
  private readonly open = new Set<string>();
  private readonly iterators: AsyncIterableIterator<EngineEvent>[];
  private timer: NodeJS.Timeout | null = null;

  /** Submits n choices for each prompt; choice i of a prompt follows the prompt's first choice
   * (leaderId) so the prompt is computed once and shared through the prefix cache. A choice with
   * maxTokens 0 (echo-only completions) never reaches the engine. */
  constructor(
    private readonly engine: EngineHandle,
    baseId: string,
    prompts: { promptIds: number[]; sampling: SamplingParams }[],
    n: number,
    latent: LatentParams,
    timeoutMs: number,
  ) {
    this.requests = prompts.flatMap(({ promptIds, sampling }, p) =>
      Array.from({ length: n }, (_, i): GenerateRequest => ({
        kind: "generate",
        id: `${baseId}-${p * n + i}`,
        promptIds,
        sampling,
        latent,
        choiceIndex: i,
        leaderId: i === 0 ? null : `${baseId}-${p * n}`,
      })),
    );
    this.iterators = this.requests.map((r) => {
      if (r.sampling.maxTokens === 0) return nothingGenerated(r);
      this.open.add(r.id);
      return engine.generate(r);
    });
    if (timeoutMs > 0 && this.open.size > 0) this.timer = setTimeout(() => this.abort("timeout"), timeoutMs).unref();
  }

  /** The weights that run this request (the engine client stamps each request as it sends it). */
  get weightsVersion(): string {
    return this.requests.find((r) => r.weightsVersion !== undefined)?.weightsVersion ?? this.engine.weightsVersion;
  }

  /** Aborts the choices still running; their finish(abort) events still arrive, so readers end. */
  abort(reason: "client" | "timeout" | "error"): void {
    if (this.open.size === 0) return;
    this.abortReason ??= reason;
    for (const id of this.open) this.engine.abort(id);
  }

  /** Aborts when the client goes away before the response is complete. */
  abortOnClose(reply: FastifyReply): void {
    reply.raw.once("close", () => {
      if (!reply.raw.writableFinished) this.abort("client");
    });
  }

  /** Every choice's events, interleaved as they come, tagged with the choice index. */
  async *events(): AsyncGenerator<{ choice: number; event: EngineEvent }> {
    try {
      if (this.iterators.length === 1) {
        // The common case (n = 1): no merging, one promise per event.
        for await (const event of this.iterators[0]!) {
          if (event.type === "finish" || event.type === "error") this.open.delete(this.requests[0]!.id);
          yield { choice: 0, event };
        }
        return;
      }
      const pending = new Map<number, Promise<{ i: number; r: IteratorResult<EngineEvent> }>>();
      const pull = (i: number) => pending.set(i, this.iterators[i]!.next().then((r) => ({ i, r })));
      this.iterators.forEach((_, i) => pull(i));
      while (pending.size > 0) {
        const { i, r } = await Promise.race(pending.values());
        if (r.done) {
          pending.delete(i);
          continue;
        }
        const e = r.value;
        if (e.type === "finish" || e.type === "error") {
          pending.delete(i);
          this.open.delete(this.requests[i]!.id);
        } else pull(i);
        yield { choice: i, event: e };
      }
    } finally {
      // Reached early only when the reader stopped (error, client gone): free the engine's work.
      this.abort("error");
      if (this.timer) clearTimeout(this.timer);
    }
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

export function engineErrorToServeError(e: ErrorEvent): ServeError {
  return new ServeError(isErrorCode(e.code) ? e.code : "engine_error", e.message);
}

export function timeoutError(ms: number): ServeError {
  return new ServeError("request_timeout", `The request did not finish within ${ms} ms and was aborted.`);
}

/** Runs a request to the end; throws the first engine error, or 408 on timeout. */
export async function collectChoices(run: GenerationRun, timeoutMs: number): Promise<ChoiceOutput[]> {
  const out: ChoiceOutput[] = run.requests.map((_, index) => ({ index, text: "", tokens: [], thoughts: [], flowLogDet: null, finish: null }));
  for await (const { choice, event: e } of run.events()) {
    const c = out[choice]!;
    if (e.type === "token") {
      c.text += e.text;
      if (e.logprob !== undefined) c.tokens.push({ tokenId: e.tokenId, text: e.text, piece: e.piece, logprob: e.logprob, top: e.topLogprobs ?? [] });
    } else if (e.type === "thought") {
      c.thoughts.push(thoughtRecord(e));
    } else if (e.type === "flow") {
      c.flowLogDet = e.logDet;
    } else if (e.type === "finish") {
      c.text += e.tail;
      c.finish = e;
    } else if (e.type === "error") {
      throw engineErrorToServeError(e);
    }
  }
  if (run.abortReason === "timeout") throw timeoutError(timeoutMs);
  return out;
}

export interface ThoughtsSummary {
  count: number;
  log_prob: number;
  log_probs: number[];
  temperature: number;
  behaviour_log_probs: (number | null)[];
  behaviour_log_prob: number | null;
  flow_log_det?: number;
  e_log_prob?: number;
  vectors?: string[];
  decoded?: string;
}

/** log_probs are the model's T_z = 1 density; behaviour_log_probs the density at the T_z that
 * drew them (what an importance ratio divides by); flow_log_det and e_log_prob when asked. */
export function thoughtsSummary(
  thoughts: ThoughtRecord[],
  opts: { vectors: boolean; decoded?: string | undefined; temperature: number; flowLogDet?: number | null },
): ThoughtsSummary {
  const logProbs = thoughts.map((t) => t.logProb);
  const behaviour = thoughts.map((t) => t.behaviourLogProb);
  const logProb = logProbs.reduce((s, x) => s + x, 0);
  const flow = opts.flowLogDet ?? null;
  return {
    count: thoughts.length,
    log_prob: logProb,
    log_probs: logProbs,
    temperature: opts.temperature,
    behaviour_log_probs: behaviour,
    behaviour_log_prob: behaviour.some((b) => b === null) ? null : behaviour.reduce((s: number, x) => s + x!, 0),
    ...(flow !== null ? { flow_log_det: flow, e_log_prob: logProb + flow } : {}),
    ...(opts.vectors ? { vectors: thoughts.filter((t) => t.vector).map((t) => encodeThought(t.vector!)) } : {}),
    ...(opts.decoded !== undefined ? { decoded: opts.decoded } : {}),
  };
}

/** The response header naming the weights version (the body's weights_version). */
export const WEIGHTS_VERSION_HEADER = "x-weights-version";

/** A choice's thought vectors, or null when the engine did not return them all. */
export function spanOf(thoughts: { vector?: Float32Array }[]): Float32Array[] | null {
  return thoughts.every((t) => t.vector) ? thoughts.map((t) => t.vector!) : null;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  completion_tokens_details: { reasoning_tokens: number };
  prompt_tokens_details: { cached_tokens: number };
}

/** Prompts count once per prompt (not per choice, as OpenAI counts n); thoughts count as
 * completion tokens and again as reasoning tokens. */
export function usageOf(finishes: (FinishEvent | null)[], n: number): Usage {
  let prompt = 0;
  let completion = 0;
  let reasoning = 0;
  let cached = 0;
  finishes.forEach((f, i) => {
    if (!f) return;
    if (i % n === 0) {
      prompt += f.promptTokens;
      cached += f.cachedTokens;
    }
    completion += f.completionTokens + f.thoughts;
    reasoning += f.thoughts;
  });
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    completion_tokens_details: { reasoning_tokens: reasoning },
    prompt_tokens_details: { cached_tokens: cached },
  };
}
