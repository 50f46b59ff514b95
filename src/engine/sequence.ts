import { THOUGHT } from "../model/positions.ts";
import type { EngineRequest, FinishReason } from "./types.ts";

export type SequenceStatus = "waiting" | "running" | "preempted" | "finished";

const TRANSITIONS: Record<SequenceStatus, SequenceStatus[]> = {
  waiting: ["running", "finished"],
  running: ["preempted", "finished"],
  preempted: ["running", "finished"],
  finished: [],
};

/** One stream of positions through the model: the request's state machine. Only the scheduler
 * changes `status`; the engine appends sampled positions. */
export class Sequence {
  readonly id: string;
  readonly request: EngineRequest;
  readonly arrivalMs: number;
  readonly promptLength: number;
  readonly tokens: number[];
  readonly thoughts: (Float32Array | null)[];
  status: SequenceStatus = "waiting";
  finishReason: FinishReason | null = null;
  /** Positions whose K/V are in the cache. */
  numComputed = 0;
  /** Positions served from the prefix cache at the last admission. */
  numCachedAtAdmission = 0;
  blockTable: number[] = [];
  /** Thoughts still to sample in the current latent span (0 = text mode). */
  thoughtsLeft = 0;
  completionTokens = 0;
  thoughtCount = 0;
  firstScheduledMs: number | null = null;
  /** Chained hashes of this sequence's full blocks, computed lazily by the block manager. */
  blockHashes: bigint[] = [];

  constructor(request: EngineRequest, arrivalMs: number) {
    this.id = request.id;
    this.request = request;
    this.arrivalMs = arrivalMs;
    this.tokens = [...request.promptIds];
    // A generation prompt may hold thought positions (an earlier latent turn continued): their
    // vectors, in order. A count mismatch is refused by the engine before it schedules anything.
    const given = request.kind === "generate" ? (request.promptThoughts ?? []) : [];
    let k = 0;
    this.thoughts = request.promptIds.map((id) => (id === THOUGHT ? (given[k++] ?? null) : null));
    if (request.kind === "score") {
      for (const t of request.thoughts) this.pushThought(t);
      for (const id of request.answerIds) this.pushToken(id);
    }
    this.promptLength = request.promptIds.length;
  }

  get numPositions(): number {
    return this.tokens.length;
  }

  get isFinished(): boolean {
    return this.status === "finished";
  }

  /** Positions still to run through the model before the next sample (or the end of scoring). */
  get numUncomputed(): number {
    return this.numPositions - this.numComputed;
  }

  setStatus(next: SequenceStatus, reason?: FinishReason): void {
    if (!TRANSITIONS[this.status].includes(next)) {
      throw new Error(`sequence ${this.id}: illegal transition ${this.status} -> ${next}`);
    }
    this.status = next;
    if (next === "finished") this.finishReason = reason ?? "stop";
  }

  pushToken(id: number): void {
    this.tokens.push(id);
    this.thoughts.push(null);
  }

  pushThought(vector: Float32Array): void {
    this.tokens.push(THOUGHT);
    this.thoughts.push(vector);
  }

  appendToken(id: number): void {
    this.pushToken(id);
    this.completionTokens++;
  }

  appendThought(vector: Float32Array): void {
    this.pushThought(vector);
    this.thoughtCount++;
    this.thoughtsLeft--;
  }
}
