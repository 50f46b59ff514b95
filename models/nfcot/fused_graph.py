"""The graph side of `nfcot.export --attention fused` (onnx only, no torch: the onnxruntime venv's
tools read it too): the plain and the fused backbone joined by one If, and where its nodes are.
"""
from __future__ import annotations

IF_NAME = "fused_path/If"


def with_decode_branch(plain, fused, max_batch: int):
    """One backbone ModelProto: If(seq == 1 and batch <= max_batch, fused, plain).

    Each branch holds its own constants as initializers (Constant nodes included, equal values
    stored once per branch): onnxruntime prepacks MatMul weights of the graph that holds them,
    not outer-scope ones (measured 10-15% slower steps with the weights in the outer graph), and
    merges repeated shape arithmetic only over shared initializers (851 nodes left in the plain
    branch with torch's Constant nodes, 625 as for the plain graph on its own). The weights are
    therefore stored twice. The plain branch keeps the plain graph's names (readers of the
    weights find them there: plain_graph); the fused branch's are prefixed decode/.

    Consumes plain and fused: the model is built in place and each source tensor's bytes are
    dropped once copied, so a model past 2 GB is held about twice at the peak (onnx.helper's
    make_graph / make_node / make_model copy every message they are given: a Qwen3-0.6B-shaped
    export peaked at 21.7 GB that way)."""
    import hashlib

    import numpy as np
    from onnx import AttributeProto, ModelProto, TensorProto, helper, numpy_helper

    inputs = {i.name for i in plain.graph.input}

    def fill(out, tag, graph):
        by_value, names = {}, {}
        pre = "" if tag == "plain" else f"{tag}/"
        out.name = f"{tag}_branch"

        def share(name, array) -> str:
            key = (str(array.dtype), array.shape, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest())
            if key not in by_value:
                by_value[key] = pre + name
                out.initializer.add().CopyFrom(numpy_helper.from_array(array, by_value[key]))
            return by_value[key]

        for t in graph.initializer:
            names[t.name] = share(t.name, numpy_helper.to_array(t))
            t.Clear()
        nodes = []
        for src in graph.node:
            value = [a for a in src.attribute if a.name == "value"]
            if src.op_type == "Constant" and value:
                names[src.output[0]] = share(f"onnx::const_{len(out.initializer)}", numpy_helper.to_array(value[0].t))
            else:
                nodes.append(src)

        def ren(x):
            return x if not x or x in inputs else names.get(x, pre + x)
        for src in nodes:
            n = out.node.add()
            n.op_type, n.name, n.domain = src.op_type, pre + src.name, src.domain
            n.input.extend(ren(x) for x in src.input)
            n.output.extend(ren(x) for x in src.output)
            n.attribute.extend(src.attribute)
        out.output.extend(helper.make_tensor_value_info(ren(o.name), o.type.tensor_type.elem_type, None)
                          for o in graph.output)

    model = ModelProto()
    model.ir_version = plain.ir_version
    model.producer_name, model.producer_version = plain.producer_name, plain.producer_version
    opsets = {o.domain: o.version for o in list(plain.opset_import) + list(fused.opset_import)}
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    g = model.graph
    g.name = plain.graph.name
    g.input.extend(plain.graph.input)
    g.output.extend(plain.graph.output)
    # The fused path when [batch, seq] <= [max_batch, 1] (seq is at least 1).
    g.initializer.append(numpy_helper.from_array(np.array([max_batch, 1], dtype=np.int64), "fused_path/limit"))
    g.node.extend([
        helper.make_node("Shape", ["input_ids"], ["fused_path/shape"], name="fused_path/Shape"),
        helper.make_node("LessOrEqual", ["fused_path/shape", "fused_path/limit"], ["fused_path/le"],
                         name="fused_path/LessOrEqual"),
        helper.make_node("Cast", ["fused_path/le"], ["fused_path/le_i"], name="fused_path/Cast", to=TensorProto.INT32),
        helper.make_node("ReduceMin", ["fused_path/le_i"], ["fused_path/all"], name="fused_path/ReduceMin", keepdims=0),
        helper.make_node("Cast", ["fused_path/all"], ["fused_path/cond"], name="fused_path/CastBool", to=TensorProto.BOOL)])
    node = g.node.add()
    node.op_type, node.name = "If", IF_NAME
    node.input.append("fused_path/cond")
    node.output.extend(o.name for o in plain.graph.output)
    for attr, tag, src in (("then_branch", "decode", fused.graph), ("else_branch", "plain", plain.graph)):
        a = node.attribute.add()
        a.name, a.type = attr, AttributeProto.GRAPH
        fill(a.g, tag, src)
    return model


# Products that read the same activation and are merged into one (merge_sibling_matmuls).
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def merge_sibling_matmuls(model) -> int:
    """A layer's q / k / v projections, and its MLP's gate and up, become one MatMul each over
    their weights concatenated along N, then one Split: for the decode branch, where a batch-1
    step is many small products, each a parallel-for over the threads (fewer, wider ones measured
    faster: README, "Merged products in the decode branch"). Only those families are merged: the LM
    head and the NF head also read one activation but are quantized apart (nfcot.quantize keeps
    the NF head in float32). The merged node is named after its members (/q_proj+/k_proj+/v_proj/
    MatMul: `--keep q_proj` and the step profile's groups still find it). Returns the number of
    MatMuls removed."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = list(g.node)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, n in enumerate(nodes):
        family = next((f for f, names in enumerate(SIBLINGS) if any(f"/{k}" in n.name for k in names)), None)
        if n.op_type == "MatMul" and family is not None and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
            groups.setdefault((n.input[0], family), []).append(i)
    replace: dict[int, list] = {}
    removed = 0
    for (x, _), idx in groups.items():
        members = [nodes[i] for i in idx]
        ws = [numpy_helper.to_array(inits[m.input[1]]) for m in members]
        if len(members) < 2 or len({w.shape[0] for w in ws}) != 1 or len({w.dtype for w in ws}) != 1:
            continue
        for m in members:  # their bytes are in ws now; the emptied initializers go below
            inits[m.input[1]].Clear()
        name = "+".join(m.name.removesuffix("/MatMul") for m in members)
        g.initializer.extend([numpy_helper.from_array(np.concatenate(ws, 1), f"{name}/weight"),
                              numpy_helper.from_array(np.array([w.shape[1] for w in ws], np.int64), f"{name}/sizes")])
        merged = [helper.make_node("MatMul", [x, f"{name}/weight"], [f"{name}/output"], name=f"{name}/MatMul"),
                  helper.make_node("Split", [f"{name}/output", f"{name}/sizes"], [m.output[0] for m in members],
                                   name=f"{name}/Split", axis=-1)]
        # At the first member's place: every member's output exists from there on.
        replace[idx[0]] = merged
        replace.update({i: [] for i in idx[1:]})
        removed += len(members) - 1
    out = [r for i, n in enumerate(nodes) for r in replace.get(i, [n])]
    del g.node[:]
    g.node.extend(out)
    used = {i for n in g.node for i in n.input}
    for i in reversed(range(len(g.initializer))):  # in place: extending a new list would copy every weight
        if not g.initializer[i].name or g.initializer[i].name not in used:
            del g.initializer[i]
    return removed


def branches(graph) -> list:
    """The graphs that hold a backbone's nodes: the If's two branches for a fused export (decode
    first), else the graph itself."""
    node = next((n for n in graph.node if n.op_type == "If" and n.name == IF_NAME), None)
    if node is None:
        return [graph]
    return [next(a.g for a in node.attribute if a.name == k) for k in ("then_branch", "else_branch")]


def plain_graph(graph):
    """The graph of the plain path (every weight under the exporter's own names)."""
    return branches(graph)[-1]


def node_counts(graph) -> dict:
    """Nodes a step runs: {"plain": n} for a plain graph; for a fused one the fused path's and the
    plain path's (the If's branch plus the outer graph's nodes)."""
    outer = [n for n in graph.node if n.name != IF_NAME]
    parts = branches(graph)
    if len(parts) == 1:
        return {"plain": len(graph.node)}
    return {"fused": len(outer) + 1 + len(parts[0].node), "plain": len(outer) + 1 + len(parts[1].node)}


if __name__ == "__main__":  # python -m nfcot.fused_graph MODEL.onnx: node_counts as JSON
    import json
    import sys

    import onnx
    print(json.dumps(node_counts(onnx.load(sys.argv[1], load_external_data=False).graph)))
