import type { BlockManager } from "./block-manager.ts";
import type { Sequence } from "./sequence.ts";
import type { FinishReason } from "./types.ts";

/** Iteration-level continuous batching (vLLM v1 style): no prefill/decode phases. Each step has
 * a token budget; running sequences go first (a decode is 1 position, a long prompt is chunked),
 * then waiting ones are admitted FCFS. When blocks run out the newest running sequence is
 * preempted by recompute. Priority sequences (the readiness probe) go before all of that. The
 * only place that changes a sequence's status. */

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
}

/** Compute positions [start, start + count) of seq in this step. */
export interface ScheduledItem {
  seq: Sequence;
  start: number;
  count: number;
}

export interface SchedulerOutput {
  items: ScheduledItem[];
  preempted: Sequence[];
  /** Finished with reason "length" because they can never fit the block pool. */
  rejected: Sequence[];
}

export class Scheduler {
  /** In admission order: the last one is the newest, first to be preempted. */
  readonly running: Sequence[] = [];
  /** FCFS; preempted sequences go back to the front. */
  readonly waiting: Sequence[] = [];
  preemptions = 0;
  /** Waiting sequences this says to hold are not admitted yet (those behind them may go): the
   * engine holds requests for weights that are not serving yet. */
  hold: (seq: Sequence) => boolean = () => false;
  private readonly live = new Map<string, Sequence>();

  constructor(
    readonly config: SchedulerConfig,
    private readonly blocks: BlockManager,
    private readonly now: () => number = Date.now,
  ) {}

  add(seq: Sequence): void {
    if (this.live.has(seq.id)) throw new Error(`duplicate sequence id ${seq.id}`);
    this.live.set(seq.id, seq);
    if (!isPriority(seq)) return void this.waiting.push(seq);
    const firstOther = this.waiting.findIndex((s) => !isPriority(s));
    this.waiting.splice(firstOther < 0 ? this.waiting.length : firstOther, 0, seq);
  }

  /** Every sequence not finished, running or waiting. */
  get liveSequences(): IterableIterator<Sequence> {
    return this.live.values();
  }

  get(id: string): Sequence | undefined {
    return this.live.get(id);
  }

  abort(id: string): Sequence | undefined {
    const seq = this.live.get(id);
    if (seq) this.finish(seq, "abort");
    return seq;
  }

  finish(seq: Sequence, reason: FinishReason): void {
    if (seq.isFinished) return;
    this.blocks.free(seq);
    remove(this.running, seq);
    remove(this.waiting, seq);
    this.live.delete(seq.id);
    seq.setStatus("finished", reason);
  }

  get numRunning(): number {
    return this.running.length;
  }

  get numWaiting(): number {
    return this.waiting.length;
  }

  get hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  schedule(): SchedulerOutput {
    const out: SchedulerOutput = { items: [], preempted: [], rejected: [] };
    let budget = this.config.maxNumBatchedTokens;
    this.admitPriority(out);

    for (let i = 0; i < this.running.length && budget > 0; ) {
      const seq = this.running[i];
      const count = Math.min(seq.numUncomputed, budget);
      if (count <= 0) {
        i++; // waiting on the engine to append its next position
        continue;
      }
      if (this.blocks.blocksFor(seq.numComputed + count) > this.blocks.numBlocks) {
        this.reject(seq, out); // would not fit even alone in the pool
        continue;
      }
      let selfPreempted = false;
      while (!this.blocks.canAppend(seq, count)) {
        // Terminates: once seq is alone, the whole pool is free and it fits (checked above).
        const victim = this.running[this.running.length - 1];
        this.preempt(victim, out);
        if (victim === seq) {
          selfPreempted = true;
          break;
        }
      }
      if (selfPreempted) break; // it was the newest: nobody runs after it
      this.blocks.append(seq, count);
      out.items.push({ seq, start: seq.numComputed, count });
      budget -= count;
      i++;
    }

    this.rejectImpossible(out);
    for (let j = 0; j < this.waiting.length && budget > 0 && this.running.length < this.config.maxNumSeqs; ) {
      const seq = this.waiting[j];
      if (this.waitsForLeader(seq) || this.hold(seq)) {
        j++; // does not hold the queue: those behind it may go
        continue;
      }
      if (!this.blocks.canAllocate(seq)) break; // FCFS: never skip ahead for lack of blocks
      this.blocks.allocate(seq);
      this.waiting.splice(j, 1);
      seq.setStatus("running");
      seq.firstScheduledMs ??= this.now();
      this.running.push(seq);
      const count = Math.min(seq.numUncomputed, budget);
      out.items.push({ seq, start: seq.numComputed, count });
      budget -= count;
    }
    return out;
  }

  /** Priority sequences are admitted first, outside maxNumSeqs and the FCFS order, preempting
   * the newest other running sequence when blocks are short. They go to the front of `running`
   * (FIFO among themselves), so the loop over running schedules them first and never picks them
   * as a victim. */
  private admitPriority(out: SchedulerOutput): void {
    for (const seq of this.waiting.filter(isPriority)) {
      while (!this.blocks.canAllocate(seq)) {
        const victim = this.running.at(-1);
        if (!victim || isPriority(victim)) break;
        this.preempt(victim, out);
      }
      if (!this.blocks.canAllocate(seq)) continue;
      this.blocks.allocate(seq);
      remove(this.waiting, seq);
      seq.setStatus("running");
      seq.firstScheduledMs ??= this.now();
      const firstOther = this.running.findIndex((s) => !isPriority(s));
      this.running.splice(firstOther < 0 ? this.running.length : firstOther, 0, seq);
    }
  }

  afterStep(out: SchedulerOutput): void {
    for (const { seq, start, count } of out.items) {
      if (seq.status !== "running") continue; // aborted or finished while the step ran
      seq.numComputed = start + count;
      this.blocks.markComputed(seq);
    }
  }

  /** Preemption by recompute: drop its KV and queue it at the front to start over. */
  private preempt(seq: Sequence, out: SchedulerOutput): void {
    this.blocks.free(seq);
    seq.numComputed = 0;
    seq.setStatus("preempted");
    remove(this.running, seq);
    this.waiting.unshift(seq);
    out.preempted.push(seq);
    this.preemptions++;
  }

  private reject(seq: Sequence, out: SchedulerOutput): void {
    this.finish(seq, "length");
    out.rejected.push(seq);
  }

  /** Waiting sequences that could never run, even in an empty pool, are rejected wherever they
   * stand in the queue, so the engine can report them at once. An empty sequence has nothing to
   * compute and would sit in running forever. */
  private rejectImpossible(out: SchedulerOutput): void {
    for (const seq of [...this.waiting]) {
      // A generation computes one position past what it holds; scoring only its own positions.
      const positions = seq.numPositions + (seq.request.kind === "generate" ? 1 : 0);
      const impossible = this.blocks.blocksFor(positions) > this.blocks.numBlocks;
      if (impossible || seq.numPositions === 0) this.reject(seq, out);
    }
  }

  /** A follower of n > 1 waits until its leader's prompt is computed, so it can hit the cache. */
  private waitsForLeader(seq: Sequence): boolean {
    if (seq.request.kind !== "generate" || seq.request.leaderId === null) return false;
    const leader = this.live.get(seq.request.leaderId);
    return leader !== undefined && leader !== seq && leader.numComputed < leader.promptLength;
  }
}

function remove(queue: Sequence[], seq: Sequence): void {
  const i = queue.indexOf(seq);
  if (i >= 0) queue.splice(i, 1);
}

const isPriority = (seq: Sequence): boolean => seq.request.kind === "generate" && seq.request.priority === true;
