/**
 * Why the decode step does not append K/V in place through onnxruntime-node: one com.microsoft
 * GroupQueryAttention node (Qwen3-0.6B's heads: 16 query / 8 KV heads of 128; one row, 9 cached
 * positions) whose past_key / past_value inputs and present_key / present_value outputs are the
 * same buffers. onnxruntime then appends the new position in place (past and present share one
 * buffer: nothing else is written), so with Python's io_binding a step costs the same whatever
 * the buffers' length. onnxruntime-node's run(feeds, fetches) takes the preallocated outputs and
 * onnxruntime writes into them in place too, but the binding hands every fetched output back as a
 * new array copied from it, so the step grows with the buffers: a whole KV cache copied per step.
 *
 *   npx tsx bench/ort-output-copy.ts [--lengths 64,4096] [--runs 50]
 *
 * Prints ms per run at each buffer length, both ways, and whether each run was in place: the past
 * kept, the new key at index 9, and the positions after it untouched (onnxruntime's GroupQueryAttention
 * clears a present it does not share with the past before filling it).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { ORT_PYTHON } from "./lib/ort-python.ts";

const { values } = parseArgs({
  options: { lengths: { type: "string", default: "64,4096" }, runs: { type: "string", default: "50" } },
});
const lengths = values.lengths!.split(",").map(Number);
const runs = Number(values.runs);
const [NH, KVH, HD, PAST] = [16, 8, 128, 9];

// The graph and the Python side, in the onnxruntime venv.
const PY = `
import sys, time, json
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto as T, helper as h
NH, KVH, HD, PAST = ${NH}, ${KVH}, ${HD}, ${PAST}
path, lengths, runs = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
f = lambda n, *d: h.make_tensor_value_info(n, T.FLOAT, list(d))
g = h.make_graph(
    [h.make_node("GroupQueryAttention", ["q", "k", "v", "past_key", "past_value", "seqlens_k", "total"],
                 ["out", "present_key", "present_value"], domain="com.microsoft", num_heads=NH, kv_num_heads=KVH)],
    "gqa",
    [f("q", 1, 1, NH * HD), f("k", 1, 1, KVH * HD), f("v", 1, 1, KVH * HD), f("past_key", 1, KVH, "T", HD),
     f("past_value", 1, KVH, "T", HD), h.make_tensor_value_info("seqlens_k", T.INT32, [1]),
     h.make_tensor_value_info("total", T.INT32, [])],
    [f("out", 1, 1, NH * HD), f("present_key", 1, KVH, "T", HD), f("present_value", 1, KVH, "T", HD)])
m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
m.ir_version = 9
onnx.save(m, path)
o = ort.SessionOptions(); o.intra_op_num_threads = 1
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
def binding(past, present):
    """One new position (q, k, v of ones) after PAST cached ones; past / present: [K, V] OrtValues."""
    io = s.io_binding()
    for name, a in (("q", NH), ("k", KVH), ("v", KVH)):
        io.bind_cpu_input(name, np.ones((1, 1, a * HD), np.float32))
    io.bind_cpu_input("seqlens_k", np.array([PAST], np.int32))
    io.bind_cpu_input("total", np.array(PAST + 1, np.int32))
    for i, kind in enumerate(("key", "value")):
        io.bind_ortvalue_input("past_" + kind, past[i]); io.bind_ortvalue_output("present_" + kind, present[i])
    io.bind_output("out")
    return io
half = lambda L: ort.OrtValue.ortvalue_from_numpy(np.full((1, KVH, L, HD), 0.5, np.float32))
res = {}
for L in lengths:
    vals = [half(L), half(L)]
    io = binding(vals, vals)
    for _ in range(3): s.run_with_iobinding(io)
    t0 = time.perf_counter()
    for _ in range(runs): s.run_with_iobinding(io)
    ms = (time.perf_counter() - t0) / runs * 1000
    k = vals[0].numpy()
    kept = bool((k[0, :, :PAST] == 0.5).all() and (k[0, :, PAST] == 1).all())
    res[L] = {"ms": ms, "kept": kept, "untouched": bool((k[0, :, PAST + 1:] == 0.5).all())}
# Control: present bound apart from the past (prefilled like it): not in place, so cleared after index 9.
present = [half(lengths[0]), half(lengths[0])]
s.run_with_iobinding(binding([half(lengths[0]), half(lengths[0])], present))
res["control_cleared"] = bool((present[0].numpy()[0, :, PAST + 1:] == 0).all())
print(json.dumps(res))
`;

const dir = mkdtempSync(join(tmpdir(), "ort-output-copy-"));
try {
  const path = join(dir, "gqa.onnx");
  const py = JSON.parse(
    execFileSync(ORT_PYTHON, ["-c", PY, path, lengths.join(","), String(runs)], { encoding: "utf8" }),
  ) as Record<string, { ms: number; kept: boolean; untouched: boolean }> & { control_cleared: boolean };
  const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  console.log(
    `GroupQueryAttention, ${NH} / ${KVH} heads of ${HD}, 1 row, ${PAST} cached positions; 1 thread; ${runs} runs; ` +
      `control (Python, present bound apart from the past): positions after the new one cleared: ${py.control_cleared ? "yes" : "no"}`,
  );
  console.log(
    "| buffer length | K+V bytes | Python io_binding ms/run | onnxruntime-node ms/run | past kept, new key at 9 (Python / node) | positions after it untouched (Python / node) | node's returned present is the caller's array |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const L of lengths) {
    const past = [0, 1].map(() => new Float32Array(KVH * L * HD).fill(0.5));
    const kv = past.map((a) => new ort.Tensor("float32", a, [1, KVH, L, HD]));
    const ones = (n: number) => new ort.Tensor("float32", new Float32Array(n * HD).fill(1), [1, 1, n * HD]);
    const feeds = {
      q: ones(NH),
      k: ones(KVH),
      v: ones(KVH),
      past_key: kv[0]!,
      past_value: kv[1]!,
      seqlens_k: new ort.Tensor("int32", Int32Array.from([PAST]), [1]),
      total: new ort.Tensor("int32", Int32Array.from([PAST + 1]), []),
    };
    const fetches = { out: null, present_key: kv[0]!, present_value: kv[1]! };
    let out = await s.run(feeds, fetches);
    for (let i = 0; i < 2; i++) out = await s.run(feeds, fetches);
    const aliased = (out.present_key!.data as Float32Array).buffer === past[0]!.buffer;
    const t0 = performance.now();
    for (let i = 0; i < runs; i++) await s.run(feeds, fetches);
    const ms = (performance.now() - t0) / runs;
    // Head h's rows are [h * L, (h + 1) * L): positions 0..PAST-1 cached, PAST new, the rest untouched.
    const k = past[0]!;
    const heads = Array.from({ length: KVH }, (_, h) => k.subarray(h * L * HD, (h + 1) * L * HD));
    const kept = heads.every(
      (r) =>
        r.subarray(0, PAST * HD).every((x) => x === 0.5) &&
        r.subarray(PAST * HD, (PAST + 1) * HD).every((x) => x === 1),
    );
    const untouched = heads.every((r) => r.subarray((PAST + 1) * HD).every((x) => x === 0.5));
    const yes = (b: boolean) => (b ? "yes" : "no");
    const p = py[String(L)] as { ms: number; kept: boolean; untouched: boolean };
    const bytes = 2 * KVH * L * HD * 4;
    console.log(
      `| ${L} | ${(bytes / 2 ** 20).toFixed(2)} MiB | ${p.ms.toFixed(3)} | ${ms.toFixed(3)} | ${yes(p.kept)} / ${yes(kept)} | ${yes(p.untouched)} / ${yes(untouched)} | ${yes(aliased)} |`,
    );
  }
  await s.release();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
