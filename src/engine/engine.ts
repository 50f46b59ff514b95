import type { BlockManager } from "./block-manager.ts";
import { behaviourLogProb, sampleThought, thoughtLogProb } from "./nf-sampler.ts";
import { Rng } from "./rng.ts";
import type { ForwardOutput, ForwardRow, Runner } from "./runner.ts";
import { greedyFromTop, needsOnlyTopLogits, sampleToken, scoreToken, type TokenHistory } from "./sampler.ts";
import { promptThoughtsProblem } from "./prompt-thoughts.ts";
import { samplingProblem } from "./sampling-params.ts";
import type { Scheduler, SchedulerOutput } from "./scheduler.ts";
import { Sequence } from "./sequence.ts";
import { THOUGHT } from "../model/positions.ts";
import { IncrementalDetokenizer, type Detokenizer } from "./detokenizer.ts";
import { StopMatcher } from "./stop-matcher.ts";
import type {
  EngineEvent,
  EngineRequest,
  EngineStats,
  FinishReason,
  GenerateRequest,
  ScoredToken,
  ScoreRequest,
  StepRecord,
} from "./types.ts";

export interface SpecialTokens {
  eos: number;
  bot?: number; // absent: a text-only model (no latent spans)
  pad?: number;
  /** Every id that ends generation; default [eos]. */
  eosIds?: readonly number[];
  /** Ids the model can emit but the tokenizer has no token for (a padded embedding): never sampled. */
  neverSample?: readonly number[];
}

const isPriority = (seq: Sequence) => seq.request.kind === "generate" && seq.request.priority === true;

/** Per-sequence sampling state the scheduler does not need to see. */
interface GenState {
  rng: Rng;
  history: TokenHistory;
  text: IncrementalDetokenizer;
  stop: StopMatcher;
  latentSpans: number;
}

/** A sequence the engine failed alone, for the worker's error log. */
export interface SequenceFailure {
  id: string;
  message: string;
  stack: string | undefined;
}

interface ScoreState {
  thoughtLogProbs: number[];
  thoughtBehaviourLogProbs: (number | null)[];
  answerLogprobs: ScoredToken[];
}

/** A finished latent span whose flow log-det was asked for: run after the step's update. */
interface FlowJob {
  seq: Sequence;
  thoughts: Float32Array[];
  done: (logDet: number) => void;
}

/** Weights loaded and waiting for the requests stamped with the serving version to finish. */
interface PendingSwap {
  runner: Runner;
  version: string;
}

/** The engine step is three calls: schedule, run, update. A failure is kept to the sequences it
 * belongs to: an error while sampling or updating one sequence fails that sequence alone, and a
 * forward pass that throws is retried on halves of the batch until the rows that fail are alone. */
export class Engine {
  private readonly gen = new Map<string, GenState>();
  private readonly scores = new Map<string, ScoreState>();
  private stepRecords: StepRecord[] = [];
  private flowJobs: FlowJob[] = [];
  private pending: PendingSwap | null = null;
  private failures: SequenceFailure[] = [];
  private readonly eosIds: readonly number[];
  /** Banned at every text step: unsamplable ids, and pad unless it doubles as an eos (Qwen). */
  private readonly alwaysBanned: number[];
  private counters = {
    steps: 0,
    lastStepMs: 0,
    lastBatchPositions: 0,
    lastBatchSequences: 0,
    promptTokens: 0,
    generationTokens: 0,
    thoughts: 0,
    topLogitsFallbacks: 0,
  };

  constructor(
    private runner: Runner,
    private readonly scheduler: Scheduler,
    private readonly blocks: BlockManager,
    private readonly detok: Detokenizer,
    private readonly special: SpecialTokens,
    private readonly maxContext: number,
    private readonly emit: (e: EngineEvent) => void,
    private readonly now: () => number = Date.now,
    /** The weights serving now (responses name it). */
    public version = "v0",
  ) {
    this.eosIds = special.eosIds ?? [special.eos];
    const pad = special.pad !== undefined && !this.eosIds.includes(special.pad) ? [special.pad] : [];
    this.alwaysBanned = [...pad, ...(special.neverSample ?? [])];
    // Requests stamped with the incoming weights wait until the old weights' requests are done.
    // The readiness probe (priority) is never held: it runs on the weights serving, and the swap
    // waits for it like for any request of the old weights.
    scheduler.hold = (seq) =>
      this.pending !== null && seq.request.weightsVersion === this.pending.version && !isPriority(seq);
  }

  /** Arms a weight swap: requests stamped `version` are held from now on; the swap itself happens
   * in `swapIfReady` once nothing stamped otherwise is left. */
  armSwap(runner: Runner, version: string): void {
    if (this.pending) throw new Error(`a swap to ${this.pending.version} is already armed`);
    this.pending = { runner, version };
  }

  get currentRunner(): Runner {
    return this.runner;
  }

  get swapArmed(): boolean {
    return this.pending !== null;
  }

  /** Between two steps: if every request for the old weights has finished, serve the new ones and
   * flush the prefix cache (its KV came from the old weights). Returns the old runner to close. */
  swapIfReady(): Runner | null {
    if (!this.pending) return null;
    const v = this.pending.version;
    for (const seq of this.scheduler.liveSequences)
      if (seq.request.weightsVersion !== v || isPriority(seq)) return null;
    const old = this.runner;
    this.runner = this.pending.runner;
    this.version = v;
    this.pending = null;
    this.blocks.flushPrefixCache();
    return old;
  }

  get hasWork(): boolean {
    return this.scheduler.hasWork;
  }

  add(req: EngineRequest): void {
    const seq = new Sequence(req, this.now());
    // Refused alone, before it holds anything: the API checks the same, so this is the backstop.
    const problem =
      req.kind === "generate"
        ? (samplingProblem(req.sampling, req.latent.temperature) ??
          this.spanProblem(req) ??
          promptThoughtsProblem(req, this.runner.thoughtDim))
        : null;
    if (problem) {
      this.emit({ type: "error", id: req.id, code: "invalid_request", message: problem });
      return;
    }
    // A generation needs one position past its prompt; scoring needs its positions.
    const needed = seq.numPositions + (req.kind === "generate" ? 1 : 0);
    if (needed > this.maxContext) {
      this.emit({
        type: "error",
        id: req.id,
        code: "context_length_exceeded",
        message: `the sequence needs ${needed} positions but this engine serves at most ${this.maxContext} (the KV cache holds ${this.blocks.numBlocks * this.blocks.blockSize})`,
      });
      return;
    }
    if (req.kind === "generate") {
      // Penalties look at tokens only: a prompt's thought positions are not in its history.
      const seen = new Set(req.promptIds.filter((t) => t !== THOUGHT));
      this.gen.set(req.id, {
        rng: Rng.forChoice(req.sampling.seed, req.choiceIndex),
        history: { counts: new Map(), seen },
        text: new IncrementalDetokenizer(this.detok),
        stop: new StopMatcher(req.sampling.stop),
        latentSpans: 0,
      });
      // A latent prompt (it ends in <bot>) opens its span at once.
      if (req.opensLatentSpan) this.openLatentSpan(seq);
    } else {
      this.scores.set(req.id, { thoughtLogProbs: [], thoughtBehaviourLogProbs: [], answerLogprobs: [] });
    }
    this.scheduler.add(seq);
  }

  /** A prompt said to open a latent span must end in this model's <bot> (its thoughts follow it). */
  private spanProblem(req: GenerateRequest): string | null {
    if (!req.opensLatentSpan) return null;
    if (this.special.bot === undefined) return "this model has no latent spans";
    return req.promptIds.at(-1) === this.special.bot ? null : "a prompt that opens a latent span must end in <bot>";
  }

  abort(id: string): void {
    const seq = this.scheduler.abort(id);
    if (seq) this.finish(seq, "abort");
  }

  async step(): Promise<void> {
    const t0 = performance.now();
    const out = this.scheduler.schedule();
    for (const seq of out.rejected) {
      this.emit({
        type: "error",
        id: seq.id,
        code: "context_length_exceeded",
        message: `the sequence needs ${seq.numPositions + 1} positions but the KV cache holds ${this.blocks.numBlocks * this.blocks.blockSize}`,
      });
      this.forget(seq.id);
    }
    if (out.items.length > 0) {
      const rows = out.items.map((it) => this.row(it.seq, it.start, it.count));
      // Greedy rows read the backbone's top-k outputs instead of [rows, vocab] logits; when a
      // row's bans cover its top k, the step runs again with the logits (idempotent, as below).
      const topOnly =
        this.runner.topK > 0 &&
        out.items.every((it) => it.seq.request.kind === "generate" && needsOnlyTopLogits(it.seq.request.sampling));
      let results = await this.forwardIsolating(rows, !topOnly);
      const picks = topOnly ? this.greedyPicks(out.items, results) : undefined;
      if (topOnly && !picks) {
        this.counters.topLogitsFallbacks++;
        results = await this.forwardIsolating(rows, true);
      }
      // Before afterStep: a failed row's positions were never computed.
      results.forEach((r, i) => {
        if (r instanceof Error) this.fail(out.items[i]!.seq, r);
      });
      this.scheduler.afterStep(out);
      this.update(out, rows, results, picks);
      await this.runFlowJobs();
      this.counters.lastBatchPositions = out.items.reduce((s, it) => s + it.count, 0);
      this.counters.lastBatchSequences = out.items.length;
      this.stepRecords.push({
        ms: performance.now() - t0,
        positions: this.counters.lastBatchPositions,
        sequences: out.items.length,
      });
    }
    this.counters.steps++;
    this.counters.lastStepMs = performance.now() - t0;
  }

  /** Steps run since the last call (the worker sends them with each batch of events). */
  drainStepRecords(): StepRecord[] {
    const r = this.stepRecords;
    this.stepRecords = [];
    return r;
  }

  /** Sequences failed alone since the last call (the worker logs them at error level). */
  drainFailures(): SequenceFailure[] {
    const f = this.failures;
    this.failures = [];
    return f;
  }

  /** A step threw outside any one sequence's work (a bug in scheduling, say): fail what was in
   * flight, keep the process up. Returns the ids failed. */
  failAll(message: string): string[] {
    const ids: string[] = [];
    for (const seq of [...this.scheduler.running, ...this.scheduler.waiting]) {
      this.scheduler.abort(seq.id);
      this.emit({ type: "error", id: seq.id, code: "engine_error", message });
      this.forget(seq.id);
      ids.push(seq.id);
    }
    return ids;
  }

  /** Fails one sequence: its blocks go back to the pool and its stream ends with an error event. */
  private fail(seq: Sequence, err: unknown): void {
    if (seq.isFinished) return;
    const e = err instanceof Error ? err : new Error(String(err));
    this.scheduler.finish(seq, "abort");
    this.emit({
      type: "error",
      id: seq.id,
      code: "engine_error",
      message: `the engine failed this request: ${e.message}`,
    });
    this.failures.push({ id: seq.id, message: e.message, stack: e.stack });
    this.forget(seq.id);
  }

  /** One forward pass for the rows; when it throws, the halves are run again (recursively), so
   * only rows that fail on their own get an Error. Rerunning a row rewrites the same K/V slots
   * from the same inputs, so a retry is idempotent. */
  private async forwardIsolating(rows: ForwardRow[], logits: boolean): Promise<(RowOutput | Error)[]> {
    try {
      const r = this.runner;
      return splitOutput(rows, await r.forward(rows, { logits }), logits ? r.vocabSize : 0, r.thoughtDim, r.topK);
    } catch (e) {
      if (rows.length === 1) return [e instanceof Error ? e : new Error(String(e))];
      const mid = rows.length >>> 1;
      return [
        ...(await this.forwardIsolating(rows.slice(0, mid), logits)),
        ...(await this.forwardIsolating(rows.slice(mid), logits)),
      ];
    }
  }

  /** Each item's next text token from the top-k outputs (undefined for a thought or a row with no
   * output this step), or undefined when some row's top k cannot decide it (greedyFromTop). */
  private greedyPicks(
    items: SchedulerOutput["items"],
    results: (RowOutput | Error)[],
  ): (number | undefined)[] | undefined {
    const picks: (number | undefined)[] = [];
    for (let i = 0; i < items.length; i++) {
      const seq = items[i]!.seq;
      const r = results[i]!;
      picks.push(undefined);
      if (r instanceof Error || seq.isFinished || seq.thoughtsLeft > 0 || !r.topIds?.length) continue;
      const req = seq.request as GenerateRequest;
      const pick = greedyFromTop(r.topLogits!, r.topIds, this.bannedIds(seq, req, this.gen.get(seq.id)!));
      if (pick === undefined) return undefined;
      picks[i] = pick;
    }
    return picks;
  }

  private row(seq: Sequence, start: number, count: number): ForwardRow {
    const end = start + count;
    let outputs: number[] = [];
    if (seq.request.kind === "generate") {
      if (end === seq.numPositions) outputs = [end - 1];
    } else {
      for (let p = Math.max(start, seq.promptLength - 1); p < Math.min(end, seq.numPositions - 1); p++) outputs.push(p);
    }
    return {
      tokens: seq.tokens.slice(start, end),
      thoughts: seq.thoughts.slice(start, end),
      start,
      blockTable: seq.blockTable,
      outputs,
    };
  }

  private update(
    out: SchedulerOutput,
    rows: ForwardRow[],
    results: (RowOutput | Error)[],
    picks: (number | undefined)[] | undefined,
  ): void {
    const V = this.runner.vocabSize;
    const D = this.runner.thoughtDim;
    out.items.forEach((it, i) => {
      const seq = it.seq;
      const r = results[i]!;
      if (r instanceof Error || seq.isFinished) return;
      try {
        rows[i]!.outputs.forEach((p, o) => {
          if (seq.isFinished) return;
          const logits = r.logits.subarray(o * V, (o + 1) * V);
          const mu = r.mu.subarray(o * D, (o + 1) * D);
          const ls = r.logSigma.subarray(o * D, (o + 1) * D);
          if (seq.request.kind === "score") this.scorePosition(seq, p, logits, mu, ls);
          else this.sample(seq, seq.request, logits, mu, ls, picks?.[i]);
        });
        if (seq.request.kind === "score" && seq.numComputed === seq.numPositions && !seq.isFinished) {
          const req = seq.request;
          const st = this.scores.get(seq.id)!;
          const result = (flowLogDet?: number) => {
            this.emit({
              type: "score",
              id: seq.id,
              thoughtLogProbs: st.thoughtLogProbs,
              thoughtBehaviourLogProbs: st.thoughtBehaviourLogProbs,
              answerLogprobs: st.answerLogprobs,
              ...(flowLogDet !== undefined ? { flowLogDet } : {}),
              weightsVersion: this.version,
            });
            this.scheduler.finish(seq, "stop");
            this.finish(seq, "stop");
          };
          if (req.returnFlowLogDet && req.thoughts.length === this.runner.numThoughts) {
            this.flowJobs.push({ seq, thoughts: req.thoughts, done: result });
          } else result();
        }
      } catch (e) {
        this.fail(seq, e);
      }
    });
  }

  private scorePosition(seq: Sequence, p: number, logits: Float32Array, mu: Float32Array, ls: Float32Array): void {
    const st = this.scores.get(seq.id)!;
    const next = seq.tokens[p + 1]!;
    if (next === THOUGHT) {
      const u = seq.thoughts[p + 1]!;
      st.thoughtLogProbs.push(thoughtLogProb(u, mu, ls));
      st.thoughtBehaviourLogProbs.push(behaviourLogProb(u, mu, ls, (seq.request as ScoreRequest).temperature ?? 0));
    } else
      st.answerLogprobs.push({ tokenId: next, ...scoreToken(logits, next, (seq.request as ScoreRequest).topLogprobs) });
  }

  /** The ids a text token may not be at this point of the sequence. */
  private bannedIds(seq: Sequence, req: GenerateRequest, g: GenState): number[] {
    // One latent span per answer: the model may open it, but not loop on it.
    const banned = [
      ...this.alwaysBanned,
      ...(g.latentSpans > 0 && this.special.bot !== undefined ? [this.special.bot] : []),
    ];
    // min_tokens (vLLM): neither EOS nor a stop token id may end the choice before it.
    const early = seq.completionTokens < (req.sampling.minTokens ?? 0);
    if (req.sampling.ignoreEos || early) banned.push(...this.eosIds);
    if (early) banned.push(...req.sampling.stopTokenIds);
    return banned;
  }

  /** `pick`: the token already decided from the top-k outputs (the logits then are empty). */
  private sample(
    seq: Sequence,
    req: GenerateRequest,
    logits: Float32Array,
    mu: Float32Array,
    ls: Float32Array,
    pick?: number,
  ): void {
    const g = this.gen.get(seq.id)!;
    if (seq.thoughtsLeft > 0) {
      const t = sampleThought(mu, ls, req.latent.temperature, g.rng);
      seq.appendThought(t.vector);
      this.counters.thoughts++;
      this.emit({
        type: "thought",
        id: seq.id,
        index: seq.thoughtCount - 1,
        logProb: t.logProb,
        behaviourLogProb: t.behaviourLogProb,
        ...(req.latent.returnVectors ? { vector: t.vector } : {}),
      });
      if (seq.thoughtsLeft === 0 && req.latent.returnFlowLogDet && this.runner.hasFlow) {
        const K = this.runner.numThoughts;
        const span = seq.thoughts.slice(-K) as Float32Array[];
        this.flowJobs.push({ seq, thoughts: span, done: (logDet) => this.emit({ type: "flow", id: seq.id, logDet }) });
      }
    } else {
      const s =
        pick !== undefined
          ? { tokenId: pick, logprob: undefined, topLogprobs: [] }
          : sampleToken(logits, req.sampling, g.history, g.rng, this.bannedIds(seq, req, g));
      if (this.eosIds.includes(s.tokenId) || req.sampling.stopTokenIds.includes(s.tokenId)) {
        this.scheduler.finish(seq, "stop");
        this.finish(seq, "stop");
        return;
      }
      seq.appendToken(s.tokenId);
      this.counters.generationTokens++;
      g.history.counts.set(s.tokenId, (g.history.counts.get(s.tokenId) ?? 0) + 1);
      g.history.seen.add(s.tokenId);
      const piece = g.text.push(s.tokenId);
      if (s.tokenId === this.special.bot) this.openLatentSpan(seq);
      const { delta, stopped } = g.stop.push(g.text.text, seq.completionTokens > (req.sampling.minTokens ?? 0));
      this.emit({
        type: "token",
        id: seq.id,
        tokenId: s.tokenId,
        text: delta,
        ...(req.sampling.logprobs ? { piece, logprob: s.logprob, topLogprobs: s.topLogprobs } : {}),
      });
      if (stopped) {
        this.scheduler.finish(seq, "stop");
        this.finish(seq, "stop");
        return;
      }
    }
    if (seq.completionTokens >= req.sampling.maxTokens || seq.numPositions >= this.maxContext) {
      this.scheduler.finish(seq, "length");
      this.finish(seq, "length");
    }
  }

  /** The spans finished this step through the flow graphs, batched, on the same weights that drew
   * them. A failure fails those sequences alone. */
  private async runFlowJobs(): Promise<void> {
    if (this.flowJobs.length === 0) return;
    const jobs = this.flowJobs;
    this.flowJobs = [];
    let dets: number[];
    try {
      dets = await this.runner.flowLogDet(jobs.map((j) => j.thoughts));
    } catch (e) {
      for (const j of jobs) {
        if (j.seq.isFinished) continue;
        this.scheduler.finish(j.seq, "abort");
        this.emit({
          type: "error",
          id: j.seq.id,
          code: "engine_error",
          message: `the flow graphs failed: ${(e as Error).message}`,
        });
        this.forget(j.seq.id);
      }
      return;
    }
    jobs.forEach((j, i) => {
      if (!j.seq.isFinished) j.done(dets[i]!);
    });
  }

  private openLatentSpan(seq: Sequence): void {
    seq.thoughtsLeft = this.runner.numThoughts;
    this.gen.get(seq.id)!.latentSpans++;
  }

  private finish(seq: Sequence, reason: FinishReason): void {
    const g = this.gen.get(seq.id);
    // Text held back as a possible stop-string prefix belongs to the output after all.
    const tail = g ? g.stop.flush(g.text.text) : "";
    const start = seq.firstScheduledMs ?? this.now();
    this.emit({
      type: "finish",
      id: seq.id,
      reason,
      promptTokens: seq.promptLength,
      completionTokens: seq.completionTokens,
      thoughts: seq.thoughtCount,
      cachedTokens: seq.numCachedAtAdmission,
      queueTimeMs: start - seq.arrivalMs,
      tail,
      weightsVersion: this.version,
    });
    this.counters.promptTokens += seq.promptLength;
    this.forget(seq.id);
  }

  private forget(id: string): void {
    this.gen.delete(id);
    this.scores.delete(id);
  }

  stats(): EngineStats {
    return {
      running: this.scheduler.numRunning,
      waiting: this.scheduler.numWaiting,
      kvBlocksTotal: this.blocks.numBlocks,
      kvBlocksUsed: this.blocks.numUsedBlocks,
      prefixCacheQueries: this.blocks.prefixQueries,
      prefixCacheHits: this.blocks.prefixHits,
      preemptions: this.scheduler.preemptions,
      ...this.counters,
    };
  }
}

/** One row's head outputs: [outputs, vocab] logits (or [outputs, k] top-k ones) and
 * [outputs, thoughtDim] mu / log sigma. */
type RowOutput = ForwardOutput;

/** The batch's outputs cut into per-row views (no copies); V is 0 when no logits were fetched. */
function splitOutput(rows: ForwardRow[], r: ForwardOutput, V: number, D: number, k: number): RowOutput[] {
  let o = 0;
  return rows.map((row) => {
    const a = o;
    o += row.outputs.length;
    return {
      logits: r.logits.subarray(a * V, o * V),
      mu: r.mu.subarray(a * D, o * D),
      logSigma: r.logSigma.subarray(a * D, o * D),
      ...(r.topIds ? { topLogits: r.topLogits!.subarray(a * k, o * k), topIds: r.topIds.subarray(a * k, o * k) } : {}),
    };
  });
}
