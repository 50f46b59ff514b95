"""A decode step's weight products alone: the graph the peer benchmark times (bench/peer/llamacpp.ts
--floor) to bound what any change to the rest of the step could win.

  models/.venv-ort/bin/python bench/peer/products_graph.py MODEL_DIR OUT.onnx

From MODEL_DIR/backbone.onnx's decode path (a fused export's decode branch, else the plain graph),
every product whose weight is an initializer (MatMul, MatMulNBits, Gemm), in the step's order, with
its own weights and attributes (the same quantization, block and accuracy level). A float32 tied LM
head (W x^T)^T (models/nfcot/tied_head.py) keeps its form, Transposes included, and its single-row
Gemm where the step has one. Each product reads the one before it, cut (Slice) or zero-padded (Pad)
to its input width: where the step splits a merged q/k/v or gate/up output, this graph slices it.
Attention, norms, rotary and the rest are not in it. Input x [batch, K of the first product];
output: the last product's. Prints a JSON summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from nfcot.fused_graph import branches  # noqa: E402
from nfcot.tied_head import collapse_single_row_head, single_row_one, tied_head  # noqa: E402

PRODUCTS = ("MatMul", "MatMulNBits", "Gemm")


def in_out(node, weights, tied) -> tuple[int, int]:
    """(K, N) of one product."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "MatMulNBits":
        return attrs["K"], attrs["N"]
    if node.output[0] == tied:  # W [N, K] on the left
        return list(weights[node.input[0]].dims)[::-1]
    dims = list(weights[node.input[1]].dims)
    if len(dims) != 2:
        raise SystemExit(f"{node.name}: a weight of rank {len(dims)}")
    return (dims[1], dims[0]) if attrs.get("transB", 0) else (dims[0], dims[1])


def products_graph(model) -> tuple[onnx.ModelProto, dict]:
    single_row = collapse_single_row_head(model) > 0  # in place: the tied form, found below
    step = branches(model.graph)[0]
    weights = {t.name: t for t in model.graph.initializer}
    weights.update({t.name: t for t in step.initializer})
    found = tied_head(step, weights)
    tied = found[1].output[0] if found else None  # nodes are matched by their (unique) first output
    chosen = [n for n in step.node
              if n.output[0] == tied or (n.op_type in PRODUCTS and len(n.input) > 1 and n.input[1] in weights)]
    if not chosen:
        raise SystemExit("no weight products in the decode path")
    nodes, inits, used = [], [], set()
    const = lambda name, v: inits.append(numpy_helper.from_array(np.array(v, np.int64), name)) or name  # noqa: E731
    k0 = in_out(chosen[0], weights, tied)[0]
    cur, width = "x", k0
    for i, n in enumerate(chosen):
        K, N = in_out(n, weights, tied)
        if width > K:
            nodes.append(helper.make_node("Slice", [cur, const(f"s{i}.start", [0]), const(f"s{i}.end", [K]),
                                                    const(f"s{i}.axes", [1])], [f"s{i}"]))
            cur = f"s{i}"
        elif width < K:
            nodes.append(helper.make_node("Pad", [cur, const(f"p{i}.pads", [0, 0, 0, K - width])], [f"p{i}"]))
            cur = f"p{i}"
        if n.output[0] == tied:
            nodes += [helper.make_node("Transpose", [cur], [f"t{i}"], name=found[0].name, perm=[1, 0]),
                      helper.make_node("MatMul", [n.input[0], f"t{i}"], [f"u{i}"], name=n.name),
                      helper.make_node("Transpose", [f"u{i}"], [f"y{i}"], name=found[2].name, perm=[1, 0])]
        else:
            node = helper.make_node(n.op_type, [cur, *n.input[1:]], [f"y{i}"], name=n.name, domain=n.domain)
            node.attribute.extend(n.attribute)
            nodes.append(node)
        for name in n.input[:1] if n.output[0] == tied else n.input[1:]:
            if name and name not in used:
                used.add(name)
                inits.append(weights[name])
        cur, width = f"y{i}", N
    graph = helper.make_graph(nodes, "products", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k0])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["batch", width])], inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    if single_row:
        single_row_one(out.graph, {t.name: t for t in out.graph.initializer})
    ops: dict[str, int] = {}
    for n in chosen:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    weight_bytes = sum(numpy_helper.to_array(weights[name]).nbytes for name in used)
    return out, {"input_width": k0, "output_width": width, "products": ops, "nodes": len(out.graph.node),
                 "tied_head": "single-row Gemm and tied" if single_row else "tied" if tied else "none",
                 "weight_bytes": weight_bytes}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    a = ap.parse_args()
    out, summary = products_graph(onnx.load(os.path.join(a.model_dir, "backbone.onnx")))
    onnx.save(out, a.out, save_as_external_data=True, all_tensors_to_one_file=True,
              location=os.path.basename(a.out) + ".data", size_threshold=1024)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
