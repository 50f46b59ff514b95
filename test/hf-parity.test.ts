import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { relErr } from "./helpers/compare-logits.ts";
import { type Packed, unpack } from "./helpers/packed-tensor.ts";
import { runPython } from "./helpers/python.ts";

// Tiny random Hugging Face checkpoints of each supported family (models/nfcot/hf_fixture.py),
// exported with `nfcot.export --hf`, run through onnxruntime-node and compared with the project's
// PyTorch model loading the same safetensors: one ragged paged batch, then a prefill followed by
// step-by-step decoding through a paged KV pool this test manages (scattered blocks).

const i64 = (xs: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(xs.map(BigInt)), dims);

interface Variant {
  arch: string;
  flags: string[];
  what: string;
  /** Relative logit / KV error allowed (1e-4 for float32 exports). */
  bound?: number;
}
// int8 weights (blocks of 64, the default) against the float32 PyTorch reference, measured on this
// fixture (seed 3): 2.0e-2 on the paged batch's logits, 1.8e-2 on its new K/V, 4.4e-2 over the
// decoded sequences (2.2e-2, 1.6e-2, 4.1e-2 at blocks of 32); a head read in the wrong orientation
// or from the wrong tensor is off by order 1.
const BOUND_INT8 = 6e-2;
const VARIANTS: Variant[] = [
  {
    arch: "llama",
    flags: ["--shards", "2", "--dtype", "bfloat16"],
    what: "Llama, llama3 RoPE scaling, untied, 2 bf16 shards",
  },
  { arch: "llama-tied", flags: [], what: "Llama, tied embeddings, attention biases" },
  { arch: "qwen2", flags: ["--dtype", "float16"], what: "Qwen2, q/k/v biases, fp16" },
  { arch: "qwen3", flags: [], what: "Qwen3, q/k norm, head dim 32, tied" },
  // The decode branch's single-row head (models/nfcot/tied_head.py): the last decode steps have one row.
  { arch: "qwen3", flags: ["--attention", "fused"], what: "Qwen3, tied, fused decode branch" },
  {
    arch: "qwen3",
    flags: ["--extras", "--external-data", "--shards", "3", "--dtype", "bfloat16"],
    what: "Qwen3 with NF-CoT extras, external data, 3 bf16 shards",
  },
  { arch: "nfcot-trace", flags: ["--extras"], what: "our own model (positional heads) converted by nfcot.hf_write" },
  {
    arch: "qwen3",
    flags: ["--weights", "int8"],
    what: "Qwen3, tied, int8 weights: the tied LM head as its own quantized MatMul",
    bound: BOUND_INT8,
  },
];

for (const v of VARIANTS) {
  test(`HF export through onnxruntime-node matches the PyTorch model: ${v.what}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "nfcot-hf-parity-"));
    try {
      const r = runPython(["-m", "nfcot.hf_parity", "--arch", v.arch, "--work", dir, "--seed", "3", ...v.flags]);
      assert.equal(r.status, 0, r.output);
      const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8"));
      const m = c.manifest;
      const latent = v.flags.includes("--extras");
      assert.equal(m.latent !== undefined, latent);
      assert.deepEqual(m.reasoning_modes, latent ? ["none", "explicit", "latent"] : ["none"]);
      assert.deepEqual(m.eos_token_ids, [3, 5]);
      assert.equal(m.special_tokens.bos, v.arch.startsWith("qwen") ? undefined : 2);
      if (v.arch === "nfcot-trace") assert.deepEqual(m.architecture.positional_heads, [1, 2, 3]);
      const spec = m.graphs.backbone;
      const bound = v.bound ?? 1e-4;
      if (v.bound !== undefined) assert.equal(m.weights.tied_lm_head, "quantized copy");
      assert.equal(
        spec.inputs.some((x: { name: string }) => x.name === "thought_inputs"),
        latent,
      );
      const session = await ort.InferenceSession.create(join(dir, "out", spec.file));

      // (a) one ragged batch over a partly filled pool: a prefill chunk, a decode step, a mixed chunk.
      const p = c.paged;
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, x] of Object.entries(p.inputs)) feeds[k] = unpack(x as Packed);
      const out = await session.run(feeds);
      const names = latent ? ["logits", "mu", "log_sigma"] : ["logits"];
      for (const name of names) {
        const want = unpack(p.expected[name]);
        assert.deepEqual(out[name]!.dims, want.dims);
        const e = relErr(out[name]!.data as Float32Array, want.data as Float32Array);
        assert.ok(e < bound, `${name}: relative error ${e}`);
      }
      if (!latent) assert.equal(out.mu, undefined);
      const kv = unpack(p.expected.new_kv);
      const [, , , H, S, hd] = kv.dims as number[];
      const valid = (i: number) => Math.floor(i / hd!) % S! < p.new_lens[Math.floor(i / (hd! * S! * H!)) % 3];
      const eKv = relErr(out.new_kv!.data as Float32Array, kv.data as Float32Array, valid);
      assert.ok(eKv < bound, `new_kv: relative error ${eKv}`);

      // (b) prefill, then one token per step, through a pool this test fills from new_kv.
      const d = c.decode;
      const a = m.architecture;
      const L = a.num_layers,
        KVH = a.num_kv_heads,
        HD = a.head_dim,
        V = a.vocab_size,
        BS = 4,
        NB = 12;
      const pool = new Float32Array(NB * L * 2 * KVH * BS * HD);
      const free = [7, 2, 10, 0, 5, 11, 3, 8, 1, 9, 4, 6];
      const seqs: number[][] = d.sequences;
      const tables: number[][] = seqs.map(() => []);
      const done = seqs.map(() => 0);
      const want = d.logits.map((x: Packed) => unpack(x).data as Float32Array);
      let steps = 0;
      let maxErr = 0;
      while (done.some((n, i) => n < seqs[i]!.length)) {
        const rows = seqs.map((_, i) => i).filter((i) => done[i]! < seqs[i]!.length);
        const take = rows.map((i) => (done[i] === 0 ? d.prefill[i] : 1) as number);
        const Sx = Math.max(...take);
        const B = rows.length;
        for (const [j, i] of rows.entries()) {
          while (tables[i]!.length * BS < done[i]! + take[j]!) tables[i]!.push(free.shift()!);
        }
        const MB = Math.max(1, ...rows.map((i) => tables[i]!.length));
        const ids: number[] = [],
          pos: number[] = [],
          bt: number[] = [],
          gather: number[] = [];
        for (const [j, i] of rows.entries()) {
          for (let s = 0; s < Sx; s++) {
            ids.push(s < take[j]! ? seqs[i]![done[i]! + s]! : 0);
            pos.push(s < take[j]! ? done[i]! + s : 0);
            if (s < take[j]!) gather.push(j * Sx + s);
          }
          for (let b = 0; b < MB; b++) bt.push(tables[i]![b] ?? 0);
        }
        const f: Record<string, ort.Tensor> = {
          input_ids: i64(ids, [B, Sx]),
          positions: i64(pos, [B, Sx]),
          past_lens: i64(
            rows.map((i) => done[i]!),
            [B],
          ),
          kv_pool: new ort.Tensor("float32", pool, [NB, L, 2, KVH, BS, HD]),
          block_tables: i64(bt, [B, MB]),
          gather_index: i64(gather, [gather.length]),
        };
        if (latent) {
          f.thought_inputs = new ort.Tensor("float32", new Float32Array(B * Sx * m.latent.thought_dim), [
            B,
            Sx,
            m.latent.thought_dim,
          ]);
          f.is_thought = new ort.Tensor("float32", new Float32Array(B * Sx), [B, Sx]);
        }
        const o = await session.run(f);
        const logits = o.logits!.data as Float32Array;
        const nk = o.new_kv!.data as Float32Array; // [L, 2, B, KVH, Sx, HD]
        let g = 0;
        for (const [j, i] of rows.entries()) {
          for (let s = 0; s < take[j]!; s++, g++) {
            const t = done[i]! + s;
            const got = logits.subarray(g * V, (g + 1) * V);
            maxErr = Math.max(maxErr, relErr(got, want[i]!.subarray(t * V, (t + 1) * V)));
            const blk = tables[i]![Math.floor(t / BS)]!,
              slot = t % BS;
            for (let l = 0; l < L; l++)
              for (let k = 0; k < 2; k++)
                for (let h = 0; h < KVH; h++) {
                  const src = ((((l * 2 + k) * B + j) * KVH + h) * Sx + s) * HD;
                  const dst = ((((blk * L + l) * 2 + k) * KVH + h) * BS + slot) * HD;
                  pool.set(nk.subarray(src, src + HD), dst);
                }
          }
          done[i] = done[i]! + take[j]!;
        }
        steps++;
      }
      assert.equal(steps, 1 + Math.max(...seqs.map((s, i) => s.length - d.prefill[i])));
      assert.ok(maxErr < bound, `decode logits: relative error ${maxErr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
