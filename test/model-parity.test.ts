import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { relErr } from "./helpers/compare-logits.ts";
import { type Packed, unpack } from "./helpers/packed-tensor.ts";
import { runPython } from "./helpers/python.ts";

/** Fixed seeds, so a failure repeats; NFCOT_PARITY_SEED replaces the first to try others. */
const SEEDS = [Number(process.env.NFCOT_PARITY_SEED ?? 41), 7];
if (!SEEDS.every(Number.isSafeInteger))
  throw new Error(`NFCOT_PARITY_SEED must be an integer, got ${process.env.NFCOT_PARITY_SEED}`);

for (const seed of SEEDS) {
  test(`ONNX graphs through onnxruntime-node match PyTorch on fresh random inputs (seed ${seed})`, async () => {
    console.log(`# model parity seed ${seed} (set NFCOT_PARITY_SEED to change it)`);
    const dir = mkdtempSync(join(tmpdir(), "nfcot-parity-"));
    try {
      const r = runPython([
        "-m",
        "nfcot.parity",
        "--fresh",
        dir,
        "--out",
        join(dir, "case.json"),
        "--seed",
        String(seed),
      ]);
      assert.equal(r.status, 0, r.output);
      const c = JSON.parse(readFileSync(join(dir, "case.json"), "utf8"));
      const backbone = await ort.InferenceSession.create(join(dir, "backbone.onnx"));
      const feeds: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(c.inputs)) feeds[k] = unpack(v as Packed);
      const out = await backbone.run(feeds);
      // Rows: a prefill chunk on an empty cache, a decode step, a mixed chunk over a partly filled pool.
      assert.deepEqual(c.new_lens, [4, 1, 3]);
      for (const name of ["logits", "mu", "log_sigma"]) {
        const want = unpack(c.expected[name]);
        assert.deepEqual(out[name]!.dims, want.dims);
        const e = relErr(out[name]!.data as Float32Array, want.data as Float32Array);
        assert.ok(e < 1e-4, `${name}: relative error ${e}`);
      }
      // new_kv [L, 2, B, kvH, S, hd]: only each row's real positions are compared.
      const kv = unpack(c.expected.new_kv);
      const [L, , B, H, S, hd] = kv.dims as number[];
      const valid = (i: number) => {
        const s = Math.floor(i / hd) % S!;
        const b = Math.floor(i / (hd! * S! * H!)) % B!;
        return s < c.new_lens[b];
      };
      assert.equal(L, (out.new_kv!.dims as number[])[0]);
      const eKv = relErr(out.new_kv!.data as Float32Array, kv.data as Float32Array, valid);
      assert.ok(eKv < 1e-4, `new_kv: relative error ${eKv}`);

      const flow = c.flow;
      const fwd = await ort.InferenceSession.create(join(dir, "flow_forward.onnx"));
      const f = await fwd.run({ e: unpack(flow.e) });
      assert.ok(relErr(f.u!.data as Float32Array, unpack(flow.u).data as Float32Array) < 1e-4);
      assert.ok(relErr(f.log_det!.data as Float32Array, unpack(flow.log_det).data as Float32Array) < 1e-4);
      const inv = await ort.InferenceSession.create(join(dir, "flow_inverse.onnx"));
      const i = await inv.run({ u: unpack(flow.u) });
      assert.ok(relErr(i.e!.data as Float32Array, unpack(flow.e).data as Float32Array) < 1e-4);
      const dec = await ort.InferenceSession.create(join(dir, "thought_decoder.onnx"));
      const d = await dec.run({ thoughts: unpack(flow.u) });
      assert.ok(relErr(d.step_logits!.data as Float32Array, unpack(flow.step_logits).data as Float32Array) < 1e-4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
