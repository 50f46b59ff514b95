import { test } from "node:test";
import assert from "node:assert/strict";
import { categorize, readProfile } from "../bench/lib/ort-profile.ts";

/** bench/step-profile.ts's reading of onnxruntime's trace, on a fixed two-run trace. */
const ev = (name: string, ts: number, dur: number, op: string, out = 1000) => ({
  cat: "Node",
  name: `${name}_kernel_time`,
  ts,
  dur,
  args: { op_name: op, output_size: String(out) },
});
const trace = [
  { cat: "Session", name: "model_run", ts: 0, dur: 500 }, // the first run (prefill): ignored with steps = 2
  ev("/lm_head/MatMul", 10, 400, "MatMul"),
  { cat: "Session", name: "model_run", ts: 1000, dur: 300 },
  ev("/lm_head/MatMul", 1010, 100, "MatMul"),
  ev("/q_proj_3/MatMul", 1120, 40, "MatMul"),
  ev("/mlp/gate_proj_1/MatMul", 1170, 30, "MatMul"),
  ev("/Gather_14", 1200, 20, "Gather", 65536),
  ev("/Gather_2", 1230, 4, "Gather", 8),
  ev("/Softmax", 1240, 16, "Softmax", 4096),
  { cat: "Node", name: "/lm_head/MatMul_fence_before", ts: 1005, dur: 1 },
  { cat: "Session", name: "model_run", ts: 2000, dur: 100 },
  ev("/lm_head/MatMul", 2010, 60, "MatMul"),
];

test("readProfile keeps the last runs' kernels and averages them per step", () => {
  const p = readProfile(trace, 2);
  assert.equal(p.runMs, 0.2); // (300 + 100) us / 2 runs
  assert.equal(p.kernels, 3.5); // 7 kernel events in the last two runs
  assert.equal(p.byNode.get("/lm_head/MatMul")!.ms, 0.08); // (100 + 60) / 2 us
  assert.deepEqual(
    p.byOpType.map(([op]) => op),
    ["MatMul", "Gather", "Softmax"],
  );
  assert.throws(() => readProfile(trace, 4), /holds 3 runs, wanted 4/);
});

test("categorize groups nodes by what they compute", () => {
  const got = Object.fromEntries(categorize(readProfile(trace, 2)).map((c) => [c.name, [c.ms, c.nodes]]));
  assert.deepEqual(got, {
    "LM head": [0.08, 1],
    "q/k/v/o projections": [0.02, 1],
    "MLP (gate, up, down, SiLU)": [0.015, 1],
    "attention: gather of the paged pool": [0.01, 1],
    "shape arithmetic (outputs <= 64 bytes)": [0.002, 1],
    "attention: scores, mask, softmax, PV, rotary, reshapes": [0.008, 1],
  });
});

test("an If node's time is its branch's nodes' time: counted once, through the branch", () => {
  // A fused export's backbone is one If: the trace lists the If and every node of the branch it ran.
  const t = [
    { cat: "Session", name: "model_run", ts: 0, dur: 300 },
    ev("/If", 5, 280, "If"),
    ev("decode//q_proj/MatMul", 10, 100, "MatMul"),
    ev("decode//GroupQueryAttention", 120, 50, "GroupQueryAttention", 4096),
  ];
  const p = readProfile(t, 1);
  assert.equal(p.kernels, 2);
  assert.deepEqual(p.byOpType, [
    ["MatMul", 0.1],
    ["GroupQueryAttention", 0.05],
  ]);
  assert.equal(p.byNode.has("/If"), false);
});
