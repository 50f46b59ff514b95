import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Scheduler, type SchedulerOutput } from "../src/engine/scheduler.ts";
import type { Sequence } from "../src/engine/sequence.ts";
import { makeSeq } from "./helpers/factories.ts";

interface Setup {
  numBlocks?: number;
  blockSize?: number;
  prefixCaching?: boolean;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
}

function makeScheduler(s: Setup = {}): { sched: Scheduler; bm: BlockManager } {
  const bm = new BlockManager({
    numBlocks: s.numBlocks ?? 16,
    blockSize: s.blockSize ?? 4,
    enablePrefixCaching: s.prefixCaching ?? false,
  });
  let clock = 1000;
  const sched = new Scheduler(
    { maxNumSeqs: s.maxNumSeqs ?? 8, maxNumBatchedTokens: s.maxNumBatchedTokens ?? 64 },
    bm,
    () => clock++,
  );
  return { sched, bm };
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
/** Items as [id, start, count] for exact comparison. */
const plan = (out: SchedulerOutput) => out.items.map((it) => [it.seq.id, it.start, it.count]);
const ids = (seqs: readonly Sequence[]) => seqs.map((s) => s.id);

test("a long prompt is prefilled in chunks under the token budget, then decodes one at a time", () => {
  const { sched } = makeScheduler({ maxNumBatchedTokens: 8 });
  const a = makeSeq("a", range(1, 20));
  sched.add(a);
  let out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 0, 8]]);
  assert.deepEqual(a.blockTable, [0, 1, 2, 3, 4]); // admission allocates the whole prompt
  assert.equal(a.status, "running");
  assert.equal(a.firstScheduledMs, 1000);
  sched.afterStep(out);
  assert.equal(a.numComputed, 8);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 8, 8]]);
  sched.afterStep(out);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 16, 4]]);
  sched.afterStep(out);
  assert.equal(a.numComputed, 20);
  a.appendToken(7);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 20, 1]]);
  assert.deepEqual(a.blockTable, [0, 1, 2, 3, 4, 5]); // position 20 opens block 5
});

test("running sequences go first, waiting ones get the rest of the budget", () => {
  const { sched } = makeScheduler({ maxNumBatchedTokens: 8 });
  const a = makeSeq("a", range(1, 6));
  const b = makeSeq("b", range(1, 6));
  const c = makeSeq("c", range(1, 3));
  [a, b, c].forEach((s) => sched.add(s));
  let out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["a", 0, 6],
    ["b", 0, 2],
  ]);
  assert.deepEqual([sched.numRunning, sched.numWaiting], [2, 1]);
  sched.afterStep(out);
  a.appendToken(9);
  out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["a", 6, 1],
    ["b", 2, 4],
    ["c", 0, 3],
  ]);
  assert.deepEqual(ids(sched.running), ["a", "b", "c"]);
  assert.equal(sched.hasWork, true);
});

test("at most maxNumSeqs run; a finished sequence makes room and is never scheduled", () => {
  const { sched, bm } = makeScheduler({ maxNumSeqs: 2 });
  const [a, b, c] = ["a", "b", "c"].map((id) => makeSeq(id, range(1, 4)));
  [a, b, c].forEach((s) => sched.add(s));
  let out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["a", 0, 4],
    ["b", 0, 4],
  ]);
  assert.deepEqual(ids(sched.waiting), ["c"]);
  sched.afterStep(out);
  sched.finish(a, "stop");
  assert.equal(a.status, "finished");
  assert.equal(a.finishReason, "stop");
  assert.deepEqual(a.blockTable, []);
  assert.equal(sched.get("a"), undefined);
  b.appendToken(5);
  out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["b", 4, 1],
    ["c", 0, 4],
  ]);
  assert.deepEqual(ids(sched.running), ["b", "c"]);
  assert.equal(bm.numUsedBlocks, 3);
});

test("out of blocks, the newest running sequence is preempted and later recomputed from 0", () => {
  const { sched, bm } = makeScheduler({ numBlocks: 4 });
  const a = makeSeq("a", range(1, 8));
  const b = makeSeq("b", range(50, 8));
  sched.add(a);
  sched.add(b);
  let out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["a", 0, 8],
    ["b", 0, 8],
  ]);
  assert.deepEqual(
    [a.blockTable, b.blockTable],
    [
      [0, 1],
      [2, 3],
    ],
  );
  sched.afterStep(out);
  a.appendToken(9);
  b.appendToken(9);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 8, 1]]);
  assert.deepEqual(ids(out.preempted), ["b"]);
  assert.equal(sched.preemptions, 1);
  assert.equal(b.status, "preempted");
  assert.equal(b.numComputed, 0);
  assert.deepEqual(b.blockTable, []);
  assert.deepEqual(ids(sched.waiting), ["b"]); // at the front; 9 positions need 3 blocks, 0 free
  assert.deepEqual(a.blockTable, [0, 1, 3]);
  sched.afterStep(out);
  sched.finish(a, "stop");
  assert.deepEqual(bm.freeList(), [2, 3, 1, 0]);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["b", 0, 9]]);
  assert.deepEqual(b.blockTable, [2, 3, 1]);
  assert.equal(b.status, "running");
  assert.equal(b.firstScheduledMs, 1001); // queue time counts from the first admission
  sched.afterStep(out);
  assert.equal(b.numComputed, 9);
  b.appendToken(10);
  out = sched.schedule();
  assert.deepEqual(plan(out), [["b", 9, 1]]);
});

test("preempted sequences return to the front of waiting, ahead of newer arrivals", () => {
  const { sched } = makeScheduler({ numBlocks: 4 });
  const a = makeSeq("a", range(1, 8));
  const b = makeSeq("b", range(50, 8));
  sched.add(a);
  sched.add(b);
  sched.afterStep(sched.schedule());
  sched.add(makeSeq("c", range(90, 2)));
  a.appendToken(9);
  const out = sched.schedule();
  assert.deepEqual(ids(out.preempted), ["b"]);
  assert.deepEqual(ids(sched.waiting), ["b", "c"]);
  assert.deepEqual(plan(out), [["a", 8, 1]]); // c fits but FCFS holds it behind b
});

test("the newest sequence that needs a block preempts itself", () => {
  const { sched } = makeScheduler({ numBlocks: 3 });
  const a = makeSeq("a", range(1, 6));
  const b = makeSeq("b", range(50, 4));
  sched.add(a);
  sched.add(b);
  sched.afterStep(sched.schedule());
  assert.deepEqual([a.blockTable, b.blockTable], [[0, 1], [2]]);
  a.appendToken(9); // 7 positions: still 2 blocks
  b.appendToken(9); // 5 positions: needs a block, none free
  const out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 6, 1]]);
  assert.deepEqual(ids(out.preempted), ["b"]);
  assert.deepEqual(ids(sched.running), ["a"]);
  assert.deepEqual(ids(sched.waiting), ["b"]);
  assert.equal(b.numComputed, 0);
});

test("a follower waits for its leader's prompt, without holding the queue, then hits its blocks", () => {
  const { sched, bm } = makeScheduler({ prefixCaching: true, maxNumBatchedTokens: 16 });
  const leader = makeSeq("L", range(1, 12));
  const follower = makeSeq("F", range(1, 12), { leaderId: "L" });
  const other = makeSeq("G", [70, 71]);
  [leader, follower, other].forEach((s) => sched.add(s));
  let out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["L", 0, 12],
    ["G", 0, 2],
  ]);
  assert.deepEqual(ids(sched.waiting), ["F"]);
  sched.afterStep(out);
  leader.appendToken(5);
  other.appendToken(5);
  out = sched.schedule();
  // Capped so one position is left to compute: 2 of the 3 cached blocks are shared.
  assert.deepEqual(plan(out), [
    ["L", 12, 1],
    ["G", 2, 1],
    ["F", 8, 4],
  ]);
  assert.deepEqual(leader.blockTable, [0, 1, 2, 4]);
  assert.deepEqual(follower.blockTable, [0, 1, 5]);
  assert.equal(follower.numCachedAtAdmission, 8);
  assert.deepEqual([bm.refCount(0), bm.refCount(1), bm.refCount(2)], [2, 2, 1]);
  assert.equal(bm.prefixHits, 8);
});

test("a follower whose leader is gone is admitted normally", () => {
  const { sched } = makeScheduler({ prefixCaching: true });
  sched.add(makeSeq("L", range(1, 8)));
  const follower = makeSeq("F", range(1, 8), { leaderId: "L" });
  sched.add(follower);
  sched.abort("L");
  assert.deepEqual(plan(sched.schedule()), [["F", 0, 8]]);
});

test("a waiting sequence larger than the whole pool is rejected, the rest go on", () => {
  const { sched } = makeScheduler({ numBlocks: 2 });
  const big = makeSeq("big", range(1, 8)); // 8 positions + 1 to generate = 3 blocks > 2
  const small = makeSeq("small", range(1, 3));
  sched.add(big);
  sched.add(small);
  const out = sched.schedule();
  assert.deepEqual(ids(out.rejected), ["big"]);
  assert.equal(big.status, "finished");
  assert.equal(big.finishReason, "length");
  assert.equal(sched.get("big"), undefined);
  assert.deepEqual(plan(out), [["small", 0, 3]]);
  assert.deepEqual(ids(sched.waiting), []);
});

test("a running sequence that outgrows the whole pool is rejected", () => {
  const { sched, bm } = makeScheduler({ numBlocks: 2 });
  const a = makeSeq("a", range(1, 7));
  sched.add(a);
  sched.afterStep(sched.schedule());
  a.appendToken(8); // 8 positions: exactly the pool
  let out = sched.schedule();
  assert.deepEqual(plan(out), [["a", 7, 1]]);
  sched.afterStep(out);
  a.appendToken(9); // 9 positions: can never fit
  out = sched.schedule();
  assert.deepEqual(plan(out), []);
  assert.deepEqual(ids(out.rejected), ["a"]);
  assert.equal(a.finishReason, "length");
  assert.equal(bm.numFreeBlocks, 2);
  assert.equal(sched.hasWork, false);
});

test("abort frees blocks at any moment: waiting, running, preempted, mid-step", () => {
  const { sched, bm } = makeScheduler({ numBlocks: 4 });
  const a = makeSeq("a", range(1, 8));
  const b = makeSeq("b", range(50, 8));
  const w = makeSeq("w", range(90, 4));
  [a, b, w].forEach((s) => sched.add(s));
  assert.equal(sched.abort("nope"), undefined);
  let out = sched.schedule();
  assert.deepEqual(ids(sched.waiting), ["w"]);
  assert.equal(sched.abort("w"), w);
  assert.equal(w.finishReason, "abort");
  assert.deepEqual(ids(sched.waiting), []);
  // Mid-step: the step ran, but b was aborted before its results came back.
  assert.equal(sched.abort("b"), b);
  assert.equal(bm.numFreeBlocks, 2);
  sched.afterStep(out);
  assert.equal(b.numComputed, 0);
  assert.equal(a.numComputed, 8);
  // Preempted: b2 takes the last blocks, then a grows and pushes it out.
  const b2 = makeSeq("b2", range(50, 8));
  sched.add(b2);
  sched.afterStep(sched.schedule());
  a.appendToken(1);
  out = sched.schedule();
  assert.deepEqual(ids(out.preempted), ["b2"]);
  assert.equal(sched.abort("b2"), b2);
  assert.equal(b2.status, "finished");
  assert.equal(sched.abort("a"), a);
  assert.deepEqual([bm.numFreeBlocks, sched.numRunning, sched.numWaiting], [4, 0, 0]);
  assert.equal(sched.hasWork, false);
  assert.deepEqual(plan(sched.schedule()), []);
});

test("no sequence is scheduled twice in a step and finished ones never appear", () => {
  const { sched } = makeScheduler({ maxNumBatchedTokens: 5, maxNumSeqs: 3 });
  const seqs = ["a", "b", "c", "d"].map((id) => makeSeq(id, range(1, 3)));
  seqs.forEach((s) => sched.add(s));
  for (let step = 0; step < 6; step++) {
    const out = sched.schedule();
    const seen = ids(out.items.map((it) => it.seq));
    assert.equal(new Set(seen).size, seen.length);
    assert.ok(out.items.every((it) => it.seq.status === "running" && it.count > 0));
    sched.afterStep(out);
    for (const s of [...sched.running]) {
      if (s.numUncomputed > 0) continue;
      if (s.completionTokens === 1) sched.finish(s, "stop");
      else s.appendToken(0);
    }
  }
  assert.deepEqual(
    seqs.map((s) => s.status),
    ["finished", "finished", "finished", "finished"],
  );
  assert.equal(sched.hasWork, false);
});

test("a priority sequence (the readiness probe) runs in the next step, ahead of a backlog and beyond maxNumSeqs", () => {
  const { sched } = makeScheduler({ maxNumSeqs: 2, maxNumBatchedTokens: 8 });
  const [a, b, c, d] = ["a", "b", "c", "d"].map((id) => makeSeq(id, range(1, 3)));
  for (const s of [a!, b!, c!, d!]) sched.add(s);
  let out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["a", 0, 3],
    ["b", 0, 3],
  ]);
  sched.afterStep(out);
  a!.appendToken(9);
  b!.appendToken(9);
  const probe = makeSeq("probe", [1], { priority: true });
  const later = makeSeq("probe-2", [1], { priority: true });
  sched.add(probe);
  sched.add(later);
  assert.deepEqual(ids(sched.waiting), ["probe", "probe-2", "c", "d"], "priority first, FIFO among themselves");
  out = sched.schedule();
  assert.deepEqual(plan(out), [
    ["probe", 0, 1],
    ["probe-2", 0, 1],
    ["a", 3, 1],
    ["b", 3, 1],
  ]);
  assert.deepEqual(ids(sched.waiting), ["c", "d"], "the FCFS backlog still waits for a free slot");
  sched.afterStep(out);
  sched.finish(probe, "length");
  sched.finish(later, "length");
  assert.deepEqual(
    ids(sched.running),
    ["a", "b"],
    "the probes took no slot from the backlog for longer than their step",
  );
});

test("a priority sequence short of blocks preempts the newest other sequence, and is never a victim itself", () => {
  const { sched, bm } = makeScheduler({ numBlocks: 2, blockSize: 4 });
  const a = makeSeq("a", range(1, 4));
  const b = makeSeq("b", range(1, 4));
  sched.add(a);
  sched.add(b);
  let out = sched.schedule();
  sched.afterStep(out);
  assert.equal(bm.numFreeBlocks, 0);
  const probe = makeSeq("probe", [1], { priority: true });
  sched.add(probe);
  a.appendToken(9); // a needs a second block next: the pool has none
  out = sched.schedule();
  assert.deepEqual(ids(out.preempted), ["b", "a"], "b makes room for the probe, then a preempts itself");
  assert.deepEqual(plan(out), [["probe", 0, 1]]);
  assert.equal(probe.status, "running");
  assert.deepEqual(ids(sched.waiting), ["a", "b"]);
});
