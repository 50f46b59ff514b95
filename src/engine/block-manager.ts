import { createHash } from "node:crypto";
import type { Sequence } from "./sequence.ts";
import { THOUGHT } from "../model/positions.ts";

/** Paged KV cache bookkeeping: a pool of fixed-size blocks, per-sequence block tables, refcounts,
 * a free list, and automatic prefix caching by chained hashes of full blocks. Ids only: the
 * runner owns the tensors. */

export interface BlockManagerOptions {
  numBlocks: number;
  blockSize: number;
  enablePrefixCaching: boolean;
}

/** What a full, computed block holds, kept so a hash hit can be checked exactly. */
interface CachedBlock {
  key: bigint;
  parentKey: bigint | null;
  tokens: number[];
  thoughts: (Float32Array | null)[];
}

export class BlockManager {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  /** Positions looked up in the prefix cache at admission. */
  prefixQueries = 0;
  /** Positions served from the prefix cache at admission. */
  prefixHits = 0;

  private readonly refCounts: number[];
  /** Blocks with refcount 0, least recently freed first; a Set keeps insertion order and lets a
   * cached free block be revived from the middle in O(1). */
  private readonly freeBlocks = new Set<number>();
  private readonly cached: (CachedBlock | null)[];
  private readonly cache = new Map<bigint, number>();
  /** Full blocks of a sequence already offered to the cache, so markComputed does no rework. */
  private readonly registered = new WeakMap<Sequence, number>();

  constructor(opts: BlockManagerOptions) {
    if (!(opts.numBlocks > 0 && opts.blockSize > 0)) throw new Error("numBlocks and blockSize must be > 0");
    this.numBlocks = opts.numBlocks;
    this.blockSize = opts.blockSize;
    this.enablePrefixCaching = opts.enablePrefixCaching;
    this.refCounts = new Array<number>(opts.numBlocks).fill(0);
    this.cached = new Array<CachedBlock | null>(opts.numBlocks).fill(null);
    for (let b = 0; b < opts.numBlocks; b++) this.freeBlocks.add(b);
  }

  get numFreeBlocks(): number {
    return this.freeBlocks.size;
  }

  get numUsedBlocks(): number {
    return this.numBlocks - this.freeBlocks.size;
  }

  blocksFor(numPositions: number): number {
    return Math.ceil(numPositions / this.blockSize);
  }

  /** Refcount of one block (for stats and tests). */
  refCount(block: number): number {
    return this.refCounts[block];
  }

  /** Forgets every prefix-cache entry (new weights: the cached K/V are stale). Blocks in use stay
   * with their sequences; none of their full blocks is offered to the cache again. */
  flushPrefixCache(): void {
    this.cache.clear();
    this.cached.fill(null);
  }

  /** Whether a block currently holds a prefix-cache entry (for tests). */
  isCached(block: number): boolean {
    return this.cached[block] !== null;
  }

  /** Free block ids from head (next to be allocated) to tail (for tests). */
  freeList(): number[] {
    return [...this.freeBlocks];
  }

  canAllocate(seq: Sequence): boolean {
    const hits = this.findCachedPrefix(seq);
    // Reviving a cached block with refcount 0 takes it off the free list too.
    const revived = hits.filter((b) => this.refCounts[b] === 0).length;
    return this.blocksFor(seq.numPositions) - hits.length + revived <= this.freeBlocks.size;
  }

  allocate(seq: Sequence): void {
    if (seq.blockTable.length > 0) throw new Error(`sequence ${seq.id} already holds blocks`);
    if (!this.canAllocate(seq)) throw new Error(`not enough free blocks for sequence ${seq.id}`);
    const hits = this.findCachedPrefix(seq);
    // Revive hits before taking fresh blocks, so taking cannot evict a block we are about to share.
    for (const b of hits) {
      if (this.refCounts[b]++ === 0) this.freeBlocks.delete(b);
    }
    const table = [...hits];
    while (table.length < this.blocksFor(seq.numPositions)) table.push(this.take());
    seq.blockTable = table;
    seq.numComputed = hits.length * this.blockSize;
    seq.numCachedAtAdmission = seq.numComputed;
    this.registered.set(seq, hits.length);
    if (this.enablePrefixCaching) {
      this.prefixQueries += seq.numPositions;
      this.prefixHits += seq.numComputed;
    }
  }

  canAppend(seq: Sequence, numNewPositions: number): boolean {
    return this.blocksNeeded(seq, numNewPositions) <= this.freeBlocks.size;
  }

  append(seq: Sequence, numNewPositions: number): void {
    const needed = this.blocksNeeded(seq, numNewPositions);
    if (needed > this.freeBlocks.size) throw new Error(`not enough free blocks for sequence ${seq.id}`);
    for (let i = 0; i < needed; i++) seq.blockTable.push(this.take());
  }

  markComputed(seq: Sequence): void {
    if (!this.enablePrefixCaching) return;
    const full = Math.min(Math.floor(seq.numComputed / this.blockSize), seq.blockTable.length);
    for (let i = this.registered.get(seq) ?? 0; i < full; i++) {
      const block = seq.blockTable[i];
      if (this.cached[block] !== null) continue; // a shared prefix block, already cached
      const key = this.blockHash(seq, i);
      // Another block already holds these contents (computed concurrently): keep that one.
      if (this.cache.has(key)) continue;
      const start = i * this.blockSize;
      this.cached[block] = {
        key,
        parentKey: i > 0 ? this.blockHash(seq, i - 1) : null,
        tokens: seq.tokens.slice(start, start + this.blockSize),
        thoughts: seq.thoughts.slice(start, start + this.blockSize).map((v) => (v ? v.slice() : null)),
      };
      this.cache.set(key, block);
    }
    this.registered.set(seq, Math.max(full, this.registered.get(seq) ?? 0));
  }

  free(seq: Sequence): void {
    // Tail blocks first, so the head of a freed chain stays cached longest: it is the part most
    // likely to be shared again.
    for (let i = seq.blockTable.length - 1; i >= 0; i--) {
      const b = seq.blockTable[i];
      if (this.refCounts[b] <= 0) throw new Error(`block ${b} freed twice`);
      if (--this.refCounts[b] === 0) this.freeBlocks.add(b);
    }
    seq.blockTable = [];
    this.registered.delete(seq);
  }

  private blocksNeeded(seq: Sequence, numNewPositions: number): number {
    return Math.max(0, this.blocksFor(seq.numComputed + numNewPositions) - seq.blockTable.length);
  }

  /** Takes the head of the free list, evicting its cache entry. */
  private take(): number {
    const b = this.freeBlocks.values().next().value;
    if (b === undefined) throw new Error("block pool exhausted");
    this.freeBlocks.delete(b);
    const entry = this.cached[b];
    if (entry && this.cache.get(entry.key) === b) this.cache.delete(entry.key);
    this.cached[b] = null;
    this.refCounts[b] = 1;
    return b;
  }

  /** Cached blocks matching the sequence's leading full blocks, leaving at least one position
   * to compute (the model needs it to produce logits). */
  private findCachedPrefix(seq: Sequence): number[] {
    if (!this.enablePrefixCaching || seq.numPositions === 0) return [];
    // Head outputs are needed from the last position (generation) or from the last prompt
    // position on (scoring): cached blocks must stop before the first position that needs one.
    const firstOutput = seq.request.kind === "score" ? seq.promptLength - 1 : seq.numPositions - 1;
    const maxBlocks = Math.floor(firstOutput / this.blockSize);
    const hits: number[] = [];
    for (let i = 0; i < maxBlocks; i++) {
      const key = this.blockHash(seq, i);
      const b = this.cache.get(key);
      if (b === undefined || !this.matches(this.cached[b], seq, i)) break;
      hits.push(b);
    }
    return hits;
  }

  /** Exact check behind a hash hit: contents and parent chain, to rule out collisions. */
  private matches(entry: CachedBlock | null, seq: Sequence, i: number): boolean {
    if (entry === null) return false;
    if (entry.parentKey !== (i > 0 ? this.blockHash(seq, i - 1) : null)) return false;
    const start = i * this.blockSize;
    for (let j = 0; j < this.blockSize; j++) {
      if (entry.tokens[j] !== seq.tokens[start + j]) return false;
      if (entry.tokens[j] === THOUGHT && !sameBytes(entry.thoughts[j], seq.thoughts[start + j])) return false;
    }
    return true;
  }

  /** Chained sha256 of full block i, memoised in seq.blockHashes (full blocks never change). */
  private blockHash(seq: Sequence, i: number): bigint {
    const bs = this.blockSize;
    for (let k = seq.blockHashes.length; k <= i; k++) {
      if ((k + 1) * bs > seq.numPositions) throw new Error(`block ${k} of ${seq.id} is not full`);
      const h = createHash("sha256");
      h.update(k > 0 ? Buffer.from(seq.blockHashes[k - 1].toString(16).padStart(64, "0"), "hex") : Buffer.alloc(32));
      h.update(new Uint8Array(Int32Array.from(seq.tokens.slice(k * bs, (k + 1) * bs)).buffer));
      for (let j = 0; j < bs; j++) {
        const pos = k * bs + j;
        if (seq.tokens[pos] !== THOUGHT) continue;
        const bytes = vectorBytes(seq.thoughts[pos]);
        // Offset and length keep the encoding unambiguous across thought positions.
        h.update(new Uint8Array(Int32Array.of(j, bytes.byteLength).buffer));
        h.update(bytes);
      }
      seq.blockHashes.push(BigInt(`0x${h.digest("hex")}`));
    }
    return seq.blockHashes[i];
  }
}

function vectorBytes(v: Float32Array | null | undefined): Uint8Array {
  return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);
}

function sameBytes(a: Float32Array | null | undefined, b: Float32Array | null | undefined): boolean {
  return Buffer.compare(vectorBytes(a), vectorBytes(b)) === 0;
}
