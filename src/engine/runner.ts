import { join } from "node:path";
import ort from "onnxruntime-node";
import { hasThoughtIO, resolveDim, topLogitsK, type GraphSpec, type Manifest } from "../model/manifest.ts";
import type { EngineOptions } from "./options.ts";
import { THOUGHT } from "../model/positions.ts";

/** The only code that touches onnxruntime: builds tensors, runs graphs, owns the KV block pool. */

export interface RunnerOptions
  extends Pick<EngineOptions, "modelDir" | "provider" | "threads" | "graphOptimization" | "blockSize">,
    Partial<Pick<EngineOptions, "threadSpinning">> {
  /** Blocks in the KV pool (resolved: kvPoolBlocks). */
  numBlocks: number;
  /** Write onnxruntime's per-op profile (JSON) with this file prefix (bench/step-profile.ts). */
  profileFilePrefix?: string;
}

/** Where a forward pass's wall time went, summed since the runner started (ms). */
export interface RunnerTiming {
  forwards: number;
  runs: number;
  feedMs: number; // building the input tensors in JS
  runMs: number; // inside session.run (onnxruntime, plus its setImmediate hop and output copies)
  writeKvMs: number; // copying the new K/V into the pool
  forwardMs: number; // the whole forward() call
}

/** One sequence's slice of a step: positions [start, start + tokens.length). */
export interface ForwardRow {
  tokens: ArrayLike<number>; // THOUGHT where the position is a thought
  thoughts: ArrayLike<Float32Array | null>;
  start: number; // = positions already in the cache for this sequence
  blockTable: readonly number[];
  outputs: readonly number[]; // absolute positions whose head outputs are wanted
}

export interface ForwardOutput {
  logits: Float32Array; // [numOutputs, vocab], rows in the order of rows x outputs; empty when not fetched
  mu: Float32Array; // [numOutputs, thoughtDim]; empty for a text-only backbone (thoughtDim 0)
  logSigma: Float32Array;
  /** [numOutputs, topK] largest logits, descending (ties: lower id first), and their ids: fetched
   * instead of the logits when the step asks for no logits and the graph has them. */
  topLogits?: Float32Array;
  topIds?: BigInt64Array;
}

/** What a forward pass fetches: `logits: false` asks for the top-k outputs instead when the graph
 * has them (runner.topK > 0); they cost [N, k] where the logits cost [N, vocab]. */
export interface ForwardOptions {
  logits: boolean;
}

export class ModelLoadError extends Error {}

/** The KV pool's storage: float16 values are kept as their bits (Node 20 has no Float16Array). */
export type KvPool = Float32Array | Uint16Array;

export class Runner {
  readonly pool: KvPool;
  readonly kvDtype: "float32" | "float16";
  readonly vocabSize: number;
  readonly thoughtDim: number;
  readonly numThoughts: number;
  /** k of the backbone's top_logits / top_ids outputs; 0 for a graph exported before them. */
  readonly topK: number;
  /** The backbone takes thought_inputs/is_thought and returns mu/log_sigma (NF-CoT extras). */
  readonly thoughtIO: boolean;
  private readonly L: number;
  private readonly kvH: number;
  private readonly hd: number;
  private readonly bs: number;
  private readonly poolTensor: ort.Tensor;
  private readonly fetchLogits: string[];
  private readonly fetchTop: string[];
  readonly timing: RunnerTiming = { forwards: 0, runs: 0, feedMs: 0, runMs: 0, writeKvMs: 0, forwardMs: 0 };

  private constructor(
    readonly manifest: Manifest,
    readonly options: RunnerOptions,
    private readonly backbone: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession | null,
    private readonly flow: { forward: ort.InferenceSession; inverse: ort.InferenceSession } | null,
    pool?: KvPool,
  ) {
    const a = manifest.architecture;
    this.vocabSize = a.vocab_size;
    this.thoughtIO = hasThoughtIO(manifest.graphs.backbone);
    this.thoughtDim = this.thoughtIO ? manifest.latent!.thought_dim : 0;
    this.numThoughts = manifest.latent?.num_thoughts ?? 0;
    this.topK = topLogitsK(manifest.graphs.backbone);
    const outs = manifest.graphs.backbone.outputs.map((o) => o.name);
    this.fetchLogits = outs.filter((n) => n !== "top_logits" && n !== "top_ids");
    this.fetchTop = outs.filter((n) => n !== "logits");
    this.L = a.num_layers;
    this.kvH = a.num_kv_heads;
    this.hd = a.head_dim;
    this.bs = options.blockSize;
    this.kvDtype = manifest.kv_cache.dtype;
    const n = options.numBlocks * this.blockFloats;
    if (pool && (pool.length !== n || pool instanceof Uint16Array !== (this.kvDtype === "float16"))) {
      throw new ModelLoadError(
        `the KV pool has ${pool.length} ${pool instanceof Uint16Array ? "float16" : "float32"} values; this model needs ${n} ${this.kvDtype}`,
      );
    }
    this.pool = pool ?? Runner.committedPool(this.kvDtype, n);
    // The pool is handed to onnxruntime zero-copy every step (serving-notes): one tensor object.
    this.poolTensor = new ort.Tensor(this.kvDtype, this.pool, [
      options.numBlocks,
      this.L,
      2,
      this.kvH,
      this.bs,
      this.hd,
    ]);
  }

  /** A zeroed pool whose pages are written once now, as llama.cpp and vLLM clear their KV caches
   * at startup: a fresh typed array is mapped lazily, and the first write into each page of a
   * block then faulted inside a step (bench/step-profile.ts, Qwen3-0.6B shape, batch 32: the new
   * K/V's copy into the pool took 62 ms of a 422 ms step, 20 ms with the pool written here). */
  private static committedPool(dtype: string, n: number): KvPool {
    const pool = dtype === "float16" ? new Uint16Array(n) : new Float32Array(n);
    pool.fill(0);
    return pool;
  }

  /** Values in one block: [L, 2, kvH, blockSize, headDim]. */
  get blockFloats(): number {
    return this.L * 2 * this.kvH * this.bs * this.hd;
  }

  static bytesPerBlock(m: Manifest, blockSize: number): number {
    const a = m.architecture;
    return a.num_layers * 2 * a.num_kv_heads * blockSize * a.head_dim * (m.kv_cache.dtype === "float16" ? 2 : 4);
  }

  /** `pool`: an existing runner's KV pool to reuse (a weight update: same layout, no second pool). */
  static async create(manifest: Manifest, options: RunnerOptions, pool?: KvPool): Promise<Runner> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [options.provider],
      graphOptimizationLevel: options.graphOptimization,
      ...(options.threads > 0 ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
      // Off by default: spinning keeps a core busy between steps and loses badly under contention
      // (bench/session-options.ts measures both).
      extra: { session: { intra_op: { allow_spinning: options.threadSpinning ? "1" : "0" } } },
      ...(options.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: options.profileFilePrefix } : {}),
    };
    const open = async (spec: GraphSpec) => {
      const path = join(options.modelDir, spec.file);
      let s: ort.InferenceSession;
      try {
        s = await ort.InferenceSession.create(path, sessionOptions);
      } catch (e) {
        const msg = (e as Error).message;
        if (options.provider === "cuda" && /shared library|cuda/i.test(msg)) {
          throw new ModelLoadError(
            "the CUDA execution provider is not installed: onnxruntime-node ships only the CPU provider " +
              "unless installed with ONNXRUNTIME_NODE_INSTALL=cuda12 (the CUDA image does this). " +
              `Use --provider cpu, or install it. (${msg})`,
          );
        }
        throw new ModelLoadError(`${path}: cannot be loaded by onnxruntime: ${msg}`);
      }
      checkGraph(manifest, spec, s, path);
      return s;
    };
    const backbone = await open(manifest.graphs.backbone);
    const decoder = manifest.graphs.thought_decoder ? await open(manifest.graphs.thought_decoder) : null;
    const { flow_forward: ff, flow_inverse: fi } = manifest.graphs;
    const flow = ff && fi ? { forward: await open(ff), inverse: await open(fi) } : null;
    return new Runner(manifest, options, backbone, decoder, flow, pool);
  }

  get hasFlow(): boolean {
    return this.flow !== null;
  }

  /** Per span of K thoughts (flow space u): log |det dF/de| at e = F^-1(u), so that
   * log p(e | q) = log p(u | q) + this (the method's Eq 3.2). */
  async flowLogDet(batch: Float32Array[][]): Promise<number[]> {
    if (!this.flow) throw new Error("this model ships no shallow flow graphs");
    const K = this.numThoughts;
    const D = this.thoughtDim;
    const u = new Float32Array(batch.length * K * D);
    batch.forEach((ts, b) => ts.forEach((t, k) => u.set(t, (b * K + k) * D)));
    const inv = await this.flow.inverse.run({ u: new ort.Tensor("float32", u, [batch.length, K, D]) });
    const fwd = await this.flow.forward.run({ e: inv["e"]! });
    return Array.from(fwd["log_det"]!.data as Float32Array);
  }

  get hasThoughtDecoder(): boolean {
    return this.decoder !== null;
  }

  /** Runs the rows (grouped so decode steps are not padded to a prefill chunk's length) and
   * writes each new position's K/V into its block. */
  async forward(rows: ForwardRow[], options: ForwardOptions = { logits: true }): Promise<ForwardOutput> {
    const t0 = performance.now();
    try {
      return await this.forwardRows(rows, options.logits || this.topK === 0 ? this.fetchLogits : this.fetchTop);
    } finally {
      this.timing.forwards++;
      this.timing.forwardMs += performance.now() - t0;
    }
  }

  private async forwardRows(rows: ForwardRow[], fetches: string[]): Promise<ForwardOutput> {
    const single = rows.map((_, i) => i).filter((i) => rows[i]!.tokens.length === 1);
    const multi = rows.map((_, i) => i).filter((i) => rows[i]!.tokens.length > 1);
    // The common step (all decode, or one prefill): the graph's outputs are already in row order.
    if (single.length === 0 || multi.length === 0) return this.runGroup(rows, fetches);
    const parts = new Map<number, { out: ForwardOutput; offsets: [number, number] }>();
    for (const group of [single, multi]) {
      const out = await this.runGroup(
        group.map((i) => rows[i]!),
        fetches,
      );
      let o = 0;
      group.forEach((i) => {
        parts.set(i, { out, offsets: [o, o + rows[i]!.outputs.length] });
        o += rows[i]!.outputs.length;
      });
    }
    const n = rows.reduce((s, r) => s + r.outputs.length, 0);
    const withTop = parts.get(single[0]!)!.out.topIds !== undefined;
    // Each output in row order again: `width` values per output position.
    const merge = <T extends Float32Array | BigInt64Array>(pick: (o: ForwardOutput) => T, width: number): T => {
      const first = pick(parts.get(single[0]!)!.out);
      const result = new (first.constructor as new (n: number) => T)(n * width);
      let w = 0;
      rows.forEach((_, i) => {
        const { out, offsets } = parts.get(i)!;
        const [a, b] = offsets;
        result.set(pick(out).subarray(a * width, b * width) as never, w * width);
        w += b - a;
      });
      return result;
    };
    const V = fetches.includes("logits") ? this.vocabSize : 0;
    const D = this.thoughtDim;
    const k = this.topK;
    return {
      logits: merge((o) => o.logits, V),
      mu: merge((o) => o.mu, D),
      logSigma: merge((o) => o.logSigma, D),
      ...(withTop ? { topLogits: merge((o) => o.topLogits!, k), topIds: merge((o) => o.topIds!, k) } : {}),
    };
  }

  private async runGroup(rows: ForwardRow[], fetches: string[]): Promise<ForwardOutput> {
    const t0 = performance.now();
    const B = rows.length;
    const S = Math.max(...rows.map((r) => r.tokens.length));
    const MB = Math.max(1, ...rows.map((r) => Math.ceil(r.start / this.bs)));
    const D = this.thoughtDim;
    const ids = new BigInt64Array(B * S);
    const th = new Float32Array(B * S * D);
    const isTh = new Float32Array(B * S);
    const pos = new BigInt64Array(B * S);
    const past = new BigInt64Array(B);
    const tables = new BigInt64Array(B * MB);
    const gather: bigint[] = [];
    rows.forEach((r, b) => {
      past[b] = BigInt(r.start);
      for (let j = 0; j < Math.ceil(r.start / this.bs); j++) tables[b * MB + j] = BigInt(r.blockTable[j]!);
      for (let s = 0; s < r.tokens.length; s++) {
        const t = r.tokens[s]!;
        pos[b * S + s] = BigInt(r.start + s);
        if (t === THOUGHT) {
          if (!this.thoughtIO) throw new Error("a thought position reached a text-only backbone");
          isTh[b * S + s] = 1;
          th.set(r.thoughts[s]!, (b * S + s) * D);
        } else {
          ids[b * S + s] = BigInt(t);
        }
      }
      for (const p of r.outputs) gather.push(BigInt(b * S + (p - r.start)));
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", ids, [B, S]),
      ...(this.thoughtIO
        ? {
            thought_inputs: new ort.Tensor("float32", th, [B, S, D]),
            is_thought: new ort.Tensor("float32", isTh, [B, S]),
          }
        : {}),
      positions: new ort.Tensor("int64", pos, [B, S]),
      past_lens: new ort.Tensor("int64", past, [B]),
      kv_pool: this.poolTensor,
      block_tables: new ort.Tensor("int64", tables, [B, MB]),
      gather_index: new ort.Tensor("int64", BigInt64Array.from(gather), [gather.length]),
    };
    const t1 = performance.now();
    const out = await this.backbone.run(feeds, fetches);
    const t2 = performance.now();
    this.writeKv(rows, out["new_kv"]!.data as KvPool, S);
    const tm = this.timing;
    tm.runs++;
    tm.feedMs += t1 - t0;
    tm.runMs += t2 - t1;
    tm.writeKvMs += performance.now() - t2;
    const empty = new Float32Array(0);
    return {
      logits: (out["logits"]?.data as Float32Array | undefined) ?? empty,
      mu: this.thoughtIO ? (out["mu"]!.data as Float32Array) : empty,
      logSigma: this.thoughtIO ? (out["log_sigma"]!.data as Float32Array) : empty,
      ...(out["top_ids"]
        ? { topLogits: out["top_logits"]!.data as Float32Array, topIds: out["top_ids"].data as BigInt64Array }
        : {}),
    };
  }

  /** new_kv [L, 2, B, kvH, S, hd] -> pool[block, l, kv, h, slot, :] (same dtype: a plain copy).
   * A row's positions that fall in one block are consecutive slots there and consecutive in
   * new_kv, so each run of them is one copy per (layer, K|V, head): a prefill chunk of n tokens
   * makes about n / blockSize times fewer copies than one per position. */
  private writeKv(rows: ForwardRow[], kv: KvPool, S: number): void {
    const { L, kvH, hd, bs } = this;
    const B = rows.length;
    const pool = this.pool as Float32Array;
    rows.forEach((r, b) => {
      for (let s = 0; s < r.tokens.length; ) {
        const p = r.start + s;
        const block = r.blockTable[Math.floor(p / bs)];
        if (block === undefined) throw new Error(`no block for position ${p}`);
        const slot = p % bs;
        const n = Math.min(bs - slot, r.tokens.length - s);
        for (let l = 0; l < L; l++) {
          for (let k = 0; k < 2; k++) {
            for (let h = 0; h < kvH; h++) {
              const src = ((((l * 2 + k) * B + b) * kvH + h) * S + s) * hd;
              const dst = ((((block * L + l) * 2 + k) * kvH + h) * bs + slot) * hd;
              pool.set(kv.subarray(src, src + n * hd) as Float32Array, dst);
            }
          }
        }
        s += n;
      }
    });
  }

  /** Thought decoder: per sequence K thoughts -> per slot argmax (variable, value) token ids. */
  async decodeThoughts(batch: Float32Array[][]): Promise<number[][][]> {
    if (!this.decoder) throw new Error("this model ships no thought decoder");
    const K = this.numThoughts;
    const D = this.thoughtDim;
    const V = this.vocabSize;
    const x = new Float32Array(batch.length * K * D);
    batch.forEach((ts, b) => ts.forEach((t, k) => x.set(t, (b * K + k) * D)));
    const out = await this.decoder.run({ thoughts: new ort.Tensor("float32", x, [batch.length, K, D]) });
    const logits = out["step_logits"]!.data as Float32Array;
    return batch.map((_, b) =>
      Array.from({ length: K }, (_, k) =>
        [0, 1].map((j) => {
          const off = ((b * K + k) * 2 + j) * V;
          let best = 0;
          for (let v = 1; v < V; v++) if (logits[off + v]! > logits[off + best]!) best = v;
          return best;
        }),
      ),
    );
  }

  /** Ends onnxruntime's profile (written to profileFilePrefix_<time>.json). */
  endProfiling(): void {
    this.backbone.endProfiling();
  }

  async close(): Promise<void> {
    await this.backbone.release();
    await this.decoder?.release();
    await this.flow?.forward.release();
    await this.flow?.inverse.release();
  }
}

/** The manifest must describe the graph exactly: same names, dtypes, ranks and fixed dims. */
function checkGraph(m: Manifest, spec: GraphSpec, s: ort.InferenceSession, path: string): void {
  const compare = (kind: string, want: GraphSpec["inputs"], have: readonly ort.InferenceSession.ValueMetadata[]) => {
    const names = have.map((h) => h.name);
    for (const w of want) {
      const h = have.find((x) => x.name === w.name);
      if (!h)
        throw new ModelLoadError(
          `${path}: manifest ${kind} '${w.name}' is not in the graph (graph has ${names.join(", ")})`,
        );
      if (!h.isTensor) throw new ModelLoadError(`${path}: ${kind} '${w.name}' is not a tensor`);
      if (h.type !== w.dtype)
        throw new ModelLoadError(`${path}: ${kind} '${w.name}' is ${h.type} in the graph, ${w.dtype} in the manifest`);
      if (h.shape.length !== w.shape.length) {
        throw new ModelLoadError(
          `${path}: ${kind} '${w.name}' has rank ${h.shape.length} in the graph, ${w.shape.length} in the manifest`,
        );
      }
      w.shape.forEach((d, i) => {
        const want = resolveDim(m, d);
        const got = h.shape[i];
        if (typeof want === "number" && typeof got === "number" && want !== got) {
          throw new ModelLoadError(
            `${path}: ${kind} '${w.name}' dim ${i} is ${got} in the graph, ${want} (${d}) in the manifest`,
          );
        }
      });
    }
    for (const n of names) {
      if (!want.some((w) => w.name === n))
        throw new ModelLoadError(`${path}: graph ${kind} '${n}' is not in the manifest`);
    }
  };
  compare("input", spec.inputs, s.inputMetadata);
  compare("output", spec.outputs, s.outputMetadata);
}
