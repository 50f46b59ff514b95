import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { loadManifest } from "../src/model/manifest.ts";
import { Runner, type ForwardRow } from "../src/engine/runner.ts";
import { THOUGHT } from "../src/model/positions.ts";
import { runPython, SHIPPED_MODEL } from "./helpers/python.ts";
import { relErr } from "./helpers/compare-logits.ts";
import type { Packed } from "./helpers/packed-tensor.ts";

/** The shipped graphs against PyTorch. The training checkpoint is not in the repository, so the
 * PyTorch side is the shipped model's own weights read back from its ONNX initializers
 * (models/nfcot/onnx_weights.py, tested for exact equality of every tensor) and run by the dense
 * PyTorch reference (models/nfcot/reference_case.py). Here the same inputs go through the serving
 * Runner: onnxruntime-node, a paged KV pool with scattered blocks, a chunked prefill and one-position
 * decode steps, three sequences (latent, explicit, none) batched together. */

interface Row {
  mode: string;
  source: string;
  prompt_len: number;
  ids: number[];
  is_thought: boolean[];
  text: string;
  thoughts: Packed;
  logits: Packed;
  mu: Packed;
  log_sigma: Packed;
  decoded_steps?: number[][];
}

const f32 = (x: Packed) => {
  const b = Buffer.from(x.data, "base64");
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

const BLOCK = 4;
const TOL = 1e-4;

test("the shipped graphs through onnxruntime-node match the PyTorch reference on fixed prompts (latent span, paged decode)", {
  timeout: 300_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "nfcot-shipped-"));
  try {
    const r = runPython(["-m", "nfcot.reference_case", "--model-dir", SHIPPED_MODEL, "--out", join(dir, "case.json")]);
    assert.equal(r.status, 0, r.output);
    const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8")) as { rows: Row[]; flow: Record<string, Packed> };
    assert.deepEqual(
      c.rows.map((x) => x.mode),
      ["latent", "explicit", "none"],
    );
    const m = loadManifest(SHIPPED_MODEL);
    const V = m.architecture.vocab_size;
    const D = m.latent!.thought_dim;
    const K = m.latent!.num_thoughts;
    const runner = await Runner.create(m, {
      modelDir: SHIPPED_MODEL,
      provider: "cpu",
      threads: 1,
      graphOptimization: "all",
      numBlocks: 128,
      blockSize: BLOCK,
    });
    try {
      // Scattered blocks: row r owns blocks 127 - r, 124 - r, ... (descending, interleaved).
      const tables = c.rows.map((row, r) =>
        Array.from({ length: Math.ceil(row.ids.length / BLOCK) }, (_, j) => 127 - r - 3 * j),
      );
      const thoughts = c.rows.map((row) => {
        const all = f32(row.thoughts);
        let k = 0;
        return row.is_thought.map((t) => (t ? all.subarray(D * k, D * ++k) : null));
      });
      const want = c.rows.map((row) => ({ logits: f32(row.logits), mu: f32(row.mu), ls: f32(row.log_sigma) }));
      const worst = { logits: 0, mu: 0, logSigma: 0 };
      const check = (
        r: number,
        positions: number[],
        out: { logits: Float32Array; mu: Float32Array; logSigma: Float32Array },
        o: number,
      ) => {
        positions.forEach((p, i) => {
          const at = (a: Float32Array, n: number, row: number) => a.subarray(row * n, (row + 1) * n);
          const e = {
            logits: relErr(at(out.logits, V, o + i), at(want[r]!.logits, V, p)),
            mu: relErr(at(out.mu, D, o + i), at(want[r]!.mu, D, p)),
            logSigma: relErr(at(out.logSigma, D, o + i), at(want[r]!.ls, D, p)),
          };
          for (const k of ["logits", "mu", "logSigma"] as const) {
            worst[k] = Math.max(worst[k], e[k]);
            assert.ok(e[k] < TOL, `${c.rows[r]!.mode} position ${p}: ${k} relative error ${e[k]}`);
          }
        });
      };
      const slice = (r: number, from: number, to: number): ForwardRow => {
        const row = c.rows[r]!;
        const pos = Array.from({ length: to - from }, (_, i) => from + i);
        return {
          tokens: pos.map((p) => (row.is_thought[p] ? THOUGHT : row.ids[p]!)),
          thoughts: pos.map((p) => thoughts[r]![p] ?? null),
          start: from,
          blockTable: tables[r]!,
          outputs: pos,
        };
      };
      // Prefill in two chunks per row (the second reads the first from the pool), all rows in one step.
      const cut = c.rows.map((row) => Math.floor(row.prompt_len / 2) + 1);
      for (const [from, to] of [
        [() => 0, (r: number) => cut[r]!],
        [(r: number) => cut[r]!, (r: number) => c.rows[r]!.prompt_len],
      ] as const) {
        const rows = c.rows.map((_, r) => slice(r, from(r), to(r)));
        const out = await runner.forward(rows);
        let o = 0;
        rows.forEach((row, r) => {
          check(r, row.outputs as number[], out, o);
          o += row.outputs.length;
        });
      }
      // Decode: one position per step for every row still going (thoughts, then tokens), so the
      // batch shrinks as rows finish. Each input is the one PyTorch chose.
      let decodeSteps = 0;
      for (let p = 0; ; p++) {
        const live = c.rows.map((_, r) => r).filter((r) => c.rows[r]!.prompt_len + p < c.rows[r]!.ids.length);
        if (live.length === 0) break;
        const rows = live.map((r) => slice(r, c.rows[r]!.prompt_len + p, c.rows[r]!.prompt_len + p + 1));
        const out = await runner.forward(rows);
        live.forEach((r, i) => check(r, [c.rows[r]!.prompt_len + p], out, i));
        decodeSteps++;
      }
      assert.equal(decodeSteps, Math.max(...c.rows.map((row) => row.ids.length - row.prompt_len)));
      assert.ok(decodeSteps >= 40, "the explicit row decodes a full trace");
      assert.equal(c.rows[0]!.is_thought.filter(Boolean).length, K, "the latent row holds a full latent span");
      console.log(
        `# shipped parity: ${decodeSteps} decode steps; worst relative error logits ${worst.logits.toExponential(2)}, mu ${worst.mu.toExponential(2)}, log_sigma ${worst.logSigma.toExponential(2)}`,
      );

      // The thought decoder, as the service runs it, reads the latent row's thoughts as PyTorch does.
      const latent = c.rows[0]!;
      const decoded = await runner.decodeThoughts([thoughts[0]!.filter((t) => t !== null) as Float32Array[]]);
      assert.deepEqual(decoded[0], latent.decoded_steps);
    } finally {
      await runner.close();
    }

    // The flow graphs and the decoder on random inputs (the server does not load the flow graphs;
    // /v1/latent/logprobs users may).
    const unpack = (x: Packed) => new ort.Tensor("float32", f32(x), x.shape);
    const fwd = await ort.InferenceSession.create(join(SHIPPED_MODEL, "flow_forward.onnx"));
    const f = await fwd.run({ e: unpack(c.flow.e!) });
    assert.ok(relErr(f.u!.data as Float32Array, f32(c.flow.u!)) < TOL);
    assert.ok(relErr(f.log_det!.data as Float32Array, f32(c.flow.log_det!)) < TOL);
    const inv = await ort.InferenceSession.create(join(SHIPPED_MODEL, "flow_inverse.onnx"));
    const i = await inv.run({ u: unpack(c.flow.u!) });
    assert.ok(relErr(i.e!.data as Float32Array, f32(c.flow.inverse_e!)) < TOL);
    const dec = await ort.InferenceSession.create(join(SHIPPED_MODEL, "thought_decoder.onnx"));
    const d = await dec.run({ thoughts: unpack(c.flow.u!) });
    assert.ok(relErr(d.step_logits!.data as Float32Array, f32(c.flow.step_logits!)) < TOL);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
