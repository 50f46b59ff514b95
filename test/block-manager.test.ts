import { test } from "node:test";
import assert from "node:assert/strict";
import { BlockManager } from "../src/engine/block-manager.ts";
import { Sequence } from "../src/engine/sequence.ts";
import { makeSeq } from "./helpers/factories.ts";

function makeManager(numBlocks: number, blockSize = 4, enablePrefixCaching = true): BlockManager {
  return new BlockManager({ numBlocks, blockSize, enablePrefixCaching });
}

/** Allocates, marks every position computed and registers the full blocks. */
function computeAll(bm: BlockManager, seq: Sequence): void {
  bm.allocate(seq);
  seq.numComputed = seq.numPositions;
  bm.markComputed(seq);
}

const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

test("starts with every block free, in id order", () => {
  const bm = makeManager(5);
  assert.equal(bm.numFreeBlocks, 5);
  assert.equal(bm.numUsedBlocks, 0);
  assert.deepEqual(bm.freeList(), [0, 1, 2, 3, 4]);
  assert.equal(bm.blocksFor(0), 0);
  assert.equal(bm.blocksFor(4), 1);
  assert.equal(bm.blocksFor(5), 2);
});

test("allocate hands out blocks from the head of the free list", () => {
  const bm = makeManager(8, 4, false);
  const a = makeSeq("a", range(1, 10));
  assert.equal(bm.canAllocate(a), true);
  bm.allocate(a);
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  assert.equal(a.numComputed, 0);
  assert.equal(a.numCachedAtAdmission, 0);
  assert.deepEqual(
    [0, 1, 2, 3].map((b) => bm.refCount(b)),
    [1, 1, 1, 0],
  );
  assert.equal(bm.numFreeBlocks, 5);
  assert.equal(bm.numUsedBlocks, 3);
  assert.deepEqual(bm.freeList(), [3, 4, 5, 6, 7]);
  assert.equal(bm.canAllocate(makeSeq("big", range(1, 20))), true);
  assert.equal(bm.canAllocate(makeSeq("too-big", range(1, 22))), false);
  assert.throws(() => bm.allocate(a), /already holds blocks/);
});

test("append grows the table only when a block boundary is crossed", () => {
  const bm = makeManager(4, 4, false);
  const a = makeSeq("a", range(1, 10));
  bm.allocate(a);
  a.numComputed = 10;
  assert.equal(bm.canAppend(a, 2), true);
  bm.append(a, 2); // 12 positions still fit in 3 blocks
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  a.numComputed = 12;
  bm.append(a, 1);
  assert.deepEqual(a.blockTable, [0, 1, 2, 3]);
  assert.equal(bm.numFreeBlocks, 0);
  a.numComputed = 16;
  assert.equal(bm.canAppend(a, 1), false);
  assert.throws(() => bm.append(a, 1), /not enough free blocks/);
});

test("free returns every block, tail blocks first, to the tail of the free list", () => {
  const bm = makeManager(8, 4, false);
  const a = makeSeq("a", range(1, 12));
  const b = makeSeq("b", range(100, 8));
  bm.allocate(a);
  bm.allocate(b);
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  assert.deepEqual(b.blockTable, [3, 4]);
  bm.free(a);
  assert.deepEqual(a.blockTable, []);
  assert.deepEqual(bm.freeList(), [5, 6, 7, 2, 1, 0]);
  bm.free(b);
  assert.deepEqual(bm.freeList(), [5, 6, 7, 2, 1, 0, 4, 3]);
  assert.equal(bm.numFreeBlocks, 8);
  assert.equal(bm.numUsedBlocks, 0);
  assert.deepEqual(
    range(0, 8).map((x) => bm.refCount(x)),
    new Array(8).fill(0),
  );
  const c = makeSeq("c", range(1, 16));
  bm.allocate(c);
  assert.deepEqual(c.blockTable, [5, 6, 7, 2]);
});

test("a second sequence with the same prompt shares the cached full blocks", () => {
  const bm = makeManager(8);
  const a = makeSeq("a", range(1, 10));
  computeAll(bm, a);
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  assert.deepEqual(
    [0, 1, 2].map((x) => bm.isCached(x)),
    [true, true, false],
  ); // block 2 is partial
  const b = makeSeq("b", range(1, 10));
  bm.allocate(b);
  assert.deepEqual(b.blockTable, [0, 1, 3]);
  assert.equal(b.numComputed, 8);
  assert.equal(b.numCachedAtAdmission, 8);
  assert.deepEqual(
    [0, 1, 2, 3].map((x) => bm.refCount(x)),
    [2, 2, 1, 1],
  );
  assert.equal(bm.numUsedBlocks, 4);
  assert.equal(bm.prefixQueries, 20);
  assert.equal(bm.prefixHits, 8);
  bm.free(a);
  bm.free(b);
  assert.equal(bm.numFreeBlocks, 8);
  assert.deepEqual(bm.freeList(), [4, 5, 6, 7, 2, 3, 1, 0]);
});

test("at least one position is left to compute when the whole prompt is cached", () => {
  const bm = makeManager(8);
  computeAll(bm, makeSeq("a", range(1, 8)));
  const b = makeSeq("b", range(1, 8));
  bm.allocate(b);
  // Both blocks are cached, but the last must be recomputed to produce logits.
  assert.deepEqual(b.blockTable, [0, 2]);
  assert.equal(b.numComputed, 4);
  assert.equal(bm.prefixHits, 4);
});

test("markComputed registers only full blocks that are computed", () => {
  const bm = makeManager(8);
  const a = makeSeq("a", range(1, 12));
  bm.allocate(a);
  a.numComputed = 7;
  bm.markComputed(a);
  assert.deepEqual(
    [0, 1, 2].map((x) => bm.isCached(x)),
    [true, false, false],
  );
  a.numComputed = 12;
  bm.markComputed(a);
  assert.deepEqual(
    [0, 1, 2].map((x) => bm.isCached(x)),
    [true, true, true],
  );
  const other = makeSeq("other", [...range(1, 4), 99, 99, 99, 99, 5]);
  bm.allocate(other);
  assert.equal(other.numComputed, 4); // first block matches, second differs
  assert.deepEqual(other.blockTable, [0, 3, 4]);
});

test("freed cached blocks can be hit until allocation evicts them, head first", () => {
  const bm = makeManager(4, 2);
  const a = makeSeq("a", [1, 2, 3, 4, 5]);
  computeAll(bm, a);
  assert.deepEqual(a.blockTable, [0, 1, 2]);
  bm.free(a);
  assert.deepEqual(bm.freeList(), [3, 2, 1, 0]);
  assert.equal(bm.numFreeBlocks, 4); // cached but unreferenced blocks count as free
  const x = makeSeq("x", [9, 9]);
  const y = makeSeq("y", [8, 8]);
  const z = makeSeq("z", [7, 7]);
  bm.allocate(x);
  bm.allocate(y);
  assert.deepEqual([x.blockTable, y.blockTable], [[3], [2]]);
  assert.deepEqual([bm.isCached(0), bm.isCached(1)], [true, true]);
  bm.allocate(z);
  assert.deepEqual(z.blockTable, [1]);
  assert.deepEqual([bm.isCached(0), bm.isCached(1)], [true, false]); // block 1 evicted
  const b = makeSeq("b", [1, 2, 3, 4, 5]);
  // Hit block 0 (revived off the free list) + 2 fresh blocks = 3 > 1 free.
  assert.equal(bm.canAllocate(b), false);
  bm.free(x);
  bm.free(y);
  assert.deepEqual(bm.freeList(), [0, 3, 2]);
  assert.equal(bm.canAllocate(b), true);
  bm.allocate(b);
  assert.deepEqual(b.blockTable, [0, 3, 2]);
  assert.equal(b.numComputed, 2);
  assert.equal(bm.numFreeBlocks, 0);
});

test("thought positions are hashed by their vector bytes", () => {
  const bm = makeManager(8);
  const withThought = (id: string, vec: Float32Array) => {
    const s = makeSeq(id, [1, 2, 3]);
    s.pushThought(vec);
    s.pushToken(5);
    s.pushToken(6);
    return s;
  };
  computeAll(bm, withThought("a", Float32Array.of(0.5, -1, 2)));
  assert.equal(bm.isCached(0), true);
  // Same values in a view at a non-zero offset of another buffer: a hit.
  const view = new Float32Array(Float32Array.of(7, 0.5, -1, 2).buffer, 4, 3);
  const same = withThought("same", view);
  bm.allocate(same);
  assert.equal(same.numComputed, 4);
  assert.deepEqual(same.blockTable, [0, 2]);
  const other = withThought("other", Float32Array.of(0.5, -1, 2.0001));
  bm.allocate(other);
  assert.equal(other.numComputed, 0);
  assert.deepEqual(other.blockTable, [3, 4]);
  assert.equal(bm.prefixQueries, 18); // 3 admissions of 6 positions
  assert.equal(bm.prefixHits, 4);
});

test("a hash hit with different contents is rejected as a collision", () => {
  const bm = makeManager(8);
  const a = makeSeq("a", range(1, 6));
  computeAll(bm, a);
  const b = makeSeq("b", range(50, 6));
  b.blockHashes.push(a.blockHashes[0]); // forge a collision on block 0
  bm.allocate(b);
  assert.equal(b.numComputed, 0);
  assert.deepEqual(b.blockTable, [2, 3]);
  assert.equal(bm.refCount(0), 1);
});

test("the first block computed with given contents keeps the cache entry", () => {
  const bm = makeManager(8);
  const a = makeSeq("a", range(1, 5));
  const b = makeSeq("b", range(1, 5));
  bm.allocate(a);
  bm.allocate(b);
  assert.deepEqual(
    [a.blockTable, b.blockTable],
    [
      [0, 1],
      [2, 3],
    ],
  );
  for (const s of [a, b]) {
    s.numComputed = 5;
    bm.markComputed(s);
  }
  assert.deepEqual([bm.isCached(0), bm.isCached(2)], [true, false]);
  const c = makeSeq("c", range(1, 5));
  bm.allocate(c);
  assert.deepEqual(c.blockTable, [0, 4]);
  assert.equal(bm.refCount(0), 2);
});

test("with prefix caching disabled nothing is shared or counted", () => {
  const bm = makeManager(8, 4, false);
  computeAll(bm, makeSeq("a", range(1, 10)));
  assert.equal(bm.isCached(0), false);
  const b = makeSeq("b", range(1, 10));
  bm.allocate(b);
  assert.equal(b.numComputed, 0);
  assert.deepEqual(b.blockTable, [3, 4, 5]);
  assert.equal(bm.prefixQueries, 0);
  assert.equal(bm.prefixHits, 0);
});

test("a scoring sequence reuses cached blocks only up to its last prompt position", () => {
  const bm = makeManager(10);
  const thoughts = [new Float32Array([1, 2]), new Float32Array([3, 4])];
  const score = (id: string) =>
    new Sequence({ kind: "score", id, promptIds: range(1, 5), thoughts, answerIds: [7, 8, 9] }, 0);
  const first = score("s1");
  computeAll(bm, first); // 10 positions: blocks of 4 -> two full blocks registered
  const second = score("s2");
  bm.allocate(second);
  // The prompt is 5 positions: its last (index 4) must be recomputed for the first thought's
  // density, so only block 0 (positions 0..3) may come from the cache.
  assert.equal(second.numComputed, 4);
  assert.deepEqual(second.blockTable.slice(0, 1), first.blockTable.slice(0, 1));
  assert.notEqual(second.blockTable[1], first.blockTable[1]);
});
