import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { ORT_PYTHON } from "../bench/lib/ort-python.ts";
import { relErr } from "./helpers/compare-logits.ts";
import { MODELS_DIR, runPython } from "./helpers/python.ts";

/** bench/peer/products_graph.py, the graph of a decode step's weight products alone that the peer
 * benchmark's --floor times, against the fused exports it is cut from: the decode branch's products
 * in its order with their own weights and attributes, and (float32) through onnxruntime-node the
 * output numpy computes from the branch's weights, Slice / Pad between the products, the NF head's
 * Gemm (transposed weight, bias) and a tied LM head in both of its forms included. */

const SCRIPT = join(MODELS_DIR, "..", "bench/peer/products_graph.py");
const ROWS = 3;

// Independent of the script: the branch's weight products (a tied head (W x^T)^T as x W^T) applied
// in order with numpy, and each untied product's name, op, attributes and weight inputs in the
// branch and at the products graph's top level. With "toy": a chain whose widths need both a Pad
// (4 -> 6) and a Slice (5 -> 3) before a Gemm with bias, cut by the script's function.
const CHECK = `
import json, os, sys
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
from nfcot.fused_graph import branches
from nfcot.tied_head import collapse_single_row_head, tied_head
d, rows, script, toy_too = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "toy"
sys.path.insert(0, os.path.dirname(script))
from products_graph import products_graph
OPS = ("MatMul", "MatMulNBits", "Gemm")
def attrs(n): return {a.name: helper.get_attribute_value(a) for a in n.attribute}
def describe(n, w): return [n.name, n.op_type, attrs(n), [numpy_helper.to_array(w[i]).tobytes().hex()[:64] for i in n.input[1:] if i]]
def untied(g, w): return [n for n in g.node if n.op_type in OPS and len(n.input) > 1 and n.input[1] in w]
def chain(prods, w, tied=None):
    W = lambda i: numpy_helper.to_array(w[i]).astype(np.float64)
    mats = [W(n.input[0]).T if n.output[0] == tied else W(n.input[1]).T if attrs(n).get("transB", 0) else W(n.input[1])
            for n in prods]
    x = (np.sin(np.arange(rows * mats[0].shape[0])) * 0.5).reshape(rows, -1)
    for n, B in zip(prods, mats):
        K = B.shape[0]
        x = x[:, :K] if x.shape[1] >= K else np.pad(x, ((0, 0), (0, K - x.shape[1])))
        y = attrs(n).get("alpha", 1.0) * (x @ B)
        if n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]:
            y = y + attrs(n).get("beta", 1.0) * W(n.input[2])
        x = y
    return {"k0": mats[0].shape[0], "expected": x.reshape(-1).tolist()}
def between(g): return sorted({n.op_type for n in g.node if n.op_type not in OPS})
m = onnx.load(d + "/backbone.onnx")
single_row = collapse_single_row_head(m)
step = branches(m.graph)[0]
w = {t.name: t for t in list(m.graph.initializer) + list(step.initializer)}
found = tied_head(step, w)
tied = found[1].output[0] if found else None
prods = [n for n in step.node if n.output[0] == tied or (n.op_type in OPS and len(n.input) > 1 and n.input[1] in w)]
p = onnx.load(d + "/products.onnx")
pw = {t.name: t for t in p.graph.initializer}
out = {"branch": [describe(n, w) for n in untied(step, w)], "products": [describe(n, pw) for n in untied(p.graph, pw)],
       "between": between(p.graph), "tied": tied is not None, "single_row": single_row}
if all(n.op_type != "MatMulNBits" for n in prods):
    out.update(chain(prods, w, tied))
if toy_too:
    r = np.random.default_rng(0)
    t = lambda name, *shape: numpy_helper.from_array(r.standard_normal(shape).astype(np.float32), name)
    toy = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"], name="m1"), helper.make_node("MatMul", ["a", "w2"], ["b"], name="m2"),
         helper.make_node("Gemm", ["b", "w3", "c3"], ["c"], name="g3", transB=1, alpha=0.5)],
        "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 2])],
        [t("w1", 8, 4), t("w2", 6, 5), t("w3", 2, 3), t("c3", 2)]), opset_imports=[helper.make_opsetid("", 17)])
    toy.ir_version = 8
    tg, _ = products_graph(toy)
    onnx.save(tg, d + "/toy.onnx")
    out["toy"] = {**chain(list(toy.graph.node), {i.name: i for i in toy.graph.initializer}), "between": between(tg.graph)}
print(json.dumps(out))
`;

interface Chain {
  k0: number;
  expected: number[];
}
interface Check extends Partial<Chain> {
  branch: [string, string, Record<string, number>, string[]][];
  products: Check["branch"];
  between: string[];
  tied: boolean;
  single_row: number;
  toy?: Chain & { between: string[] };
}

function ok(r: { status: number | null; output: string }): void {
  assert.equal(r.status, 0, r.output);
}

function ortPython(args: string[]): { status: number | null; output: string } {
  const r = spawnSync(ORT_PYTHON, args, { cwd: MODELS_DIR, encoding: "utf8" });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Cuts dir's products graph, then checks it (CHECK's JSON). */
function cut(dir: string, toy = false): Check {
  ok(ortPython([SCRIPT, dir, join(dir, "products.onnx")]));
  const r = spawnSync(ORT_PYTHON, ["-c", CHECK, dir, String(ROWS), SCRIPT, toy ? "toy" : ""], {
    cwd: MODELS_DIR,
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Check;
}

async function runProducts(path: string, rows: number): Promise<ort.Tensor> {
  const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 });
  try {
    const meta = s.inputMetadata[0]!;
    assert.ok(meta.isTensor);
    const k0 = Number(meta.shape[1]);
    const x = Float32Array.from({ length: rows * k0 }, (_, i) => Math.sin(i) * 0.5);
    return (await s.run({ x: new ort.Tensor("float32", x, [rows, k0]) }))[s.outputNames[0]!]!;
  } finally {
    await s.release();
  }
}

/** The graph's output through onnxruntime-node against numpy's chain, within 1e-4 (relErr), for
 * `rows` rows (the first rows of the expected output: rows are independent). */
async function matches(path: string, want: Chain, rows = ROWS): Promise<ort.Tensor> {
  const got = await runProducts(path, rows);
  const width = want.expected.length / ROWS;
  assert.deepEqual(got.dims, [rows, width]);
  const e = relErr(got.data as Float32Array, Float32Array.from(want.expected.slice(0, rows * width)));
  assert.ok(e < 1e-4, `${path} (${rows} rows): relative error ${e}`);
  return got;
}

test("the products graph holds the decode branch's weight products and computes their chain", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "nfcot-products-"));
  try {
    const fp32 = join(tmp, "fp32");
    ok(runPython(["-m", "nfcot.export", "--preset", "tiny", "--out", fp32]));
    const int4 = join(tmp, "int4");
    cpSync(fp32, int4, { recursive: true });
    ok(ortPython(["-m", "nfcot.quantize", int4, "--weights", "int4"]));

    const f = cut(fp32, true);
    // Per layer: merged q/k/v, o, merged gate/up, down; then the thought projection's two, the LM
    // head and the NF head (tiny preset: 2 layers; its LM head is untied).
    const names = f.branch.map((n) => n[0]);
    assert.equal(names.filter((n) => /_proj/.test(n) && !n.includes("thought")).length, 4 * 2);
    assert.ok(names.includes("decode//lm_head/MatMul") && names.includes("decode//nf_head/Gemm"), names.join());
    assert.equal(f.tied, false);
    assert.deepEqual(f.products, f.branch);
    // The tiny preset's widths only ever narrow (its vocabulary is wider than its hidden size).
    assert.deepEqual(f.between, ["Slice"]);
    const got = await matches(join(fp32, "products.onnx"), f as Chain);
    assert.deepEqual(f.toy!.between, ["Pad", "Slice"]);
    await matches(join(fp32, "toy.onnx"), f.toy!);

    const i4 = cut(int4);
    assert.deepEqual(i4.products, i4.branch);
    const quantized = i4.branch.filter((n) => n[1] === "MatMulNBits");
    // Every product but the float32-kept thought projection and NF head: 4 per layer and the LM head.
    assert.equal(quantized.length, 4 * 2 + 1);
    for (const n of quantized) assert.deepEqual([n[2].bits, n[2].accuracy_level, n[2].block_size], [4, 4, 64]);
    const out = await runProducts(join(int4, "products.onnx"), ROWS);
    assert.deepEqual(out.dims, got.dims);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a float32 tied LM head keeps its tied form and its single-row Gemm in the products graph", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "nfcot-products-tied-"));
  try {
    const hf = join(tmp, "hf");
    const dir = join(tmp, "fused");
    ok(runPython(["-m", "nfcot.hf_fixture", "--arch", "qwen3", "--out", hf]));
    ok(runPython(["-m", "nfcot.export", "--hf", hf, "--out", dir, "--attention", "fused"]));
    const c = cut(dir);
    assert.deepEqual([c.tied, c.single_row], [true, 1]);
    // 2 layers x (q/k/v, o, gate/up, down): the head is not among the untied products.
    assert.equal(c.branch.length, 8);
    assert.deepEqual(c.products, c.branch);
    // Its two forms: If(one row, Gemm(x, W, transB=1), (W x^T)^T), as in the decode branch.
    assert.deepEqual(c.between, ["Constant", "Equal", "If", "Shape", "Slice", "Squeeze"]);
    await matches(join(dir, "products.onnx"), c as Chain);
    await matches(join(dir, "products.onnx"), c as Chain, 1);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
