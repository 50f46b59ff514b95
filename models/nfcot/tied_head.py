"""A tied LM head as a MatMul of its own, so that the weight quantizers reach it.

The exporter writes a tied LM head as (W x^T)^T (nfcot/model.py, `logits`): the graph then holds
the embedding W once, read by the Gather and by the head's MatMul. That MatMul has its constant on
the left, and onnxruntime's MatMulNBitsQuantizer only quantizes a constant right-hand side, so an
int8 / int4 export used to keep the whole head in float32: at Qwen3-0.6B's size 622 MB of float32
read at every decode step beside a 250 MB int4 backbone.

`untie` rewrites Transpose -> MatMul(W, .) -> Transpose into MatMul(x, W^T), W^T a new initializer
the quantizer then replaces with its quantized copy (int4: 87 MB at that size). The embedding stays
float32 for the Gather. Float32 exports keep the tied form: there the copy would add 622 MB to the
session, and a scratch comparison found it faster at batch 1 only (slower at batch 32).

`single_row_head` gives the float32 tied head of a fused export's decode branch a second form
for steps with one output row (a single stream's decode step). (W x^T)^T with a single column of
x^T leaves most of each vector lane of onnxruntime's float32 GEMM kernel idle, while Gemm(x, W,
transB=1) streams W once. onnxruntime prepacks the Gemm's W at load, outer-scope or not: one more
copy of the embedding in memory (622 MB at Qwen3-0.6B's size). A fused export already holds every
weight twice for its speed, so it pays that there; plain exports keep the tied form alone. From a
few rows up the tied form is as fast or faster, so it serves them. At the Qwen3-0.6B shape the
batch-1 step went from 113-118 to 90-101 ms (README, "Tied heads at batch 1").
`collapse_single_row_head` puts the tied form back: the quantizers and the float16 converter see
the graph as the exporter wrote it.
"""
from __future__ import annotations

from .fused_graph import branches

NODE = "/lm_head/MatMul"  # the untied exporter's name, so `--keep lm_head` matches it too
WEIGHT = "lm_head.weight_untied"
SINGLE_ROW = "/lm_head/single_row"  # the If of single_row_head and its helper nodes


def _swaps_last_two(node) -> bool:
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
    return perm is not None and len(perm) >= 2 and perm[-2:] == [len(perm) - 1, len(perm) - 2] \
        and perm[:-2] == list(range(len(perm) - 2))


def tied_head(graph, initializers: dict):
    """(Transpose, MatMul, Transpose, whether the first Transpose has no other reader) of the tied
    head (W x^T)^T in graph, or None. The exporter
    names the embedding after its module (m.model.embed_tokens.weight)."""
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    for m in graph.node:
        if m.op_type != "MatMul" or m.input[0] not in initializers or "embed_tokens" not in m.input[0]:
            continue
        left = producer.get(m.input[1])
        after = readers.get(m.output[0], [])
        if len(initializers[m.input[0]].dims) == 2 and left is not None and left.op_type == "Transpose" \
                and _swaps_last_two(left) and len(after) == 1 and after[0].op_type == "Transpose" \
                and _swaps_last_two(after[0]):
            return left, m, after[0], len(readers[left.output[0]]) == 1
    return None


def _copy(node):
    from onnx import NodeProto

    out = NodeProto()
    out.CopyFrom(node)
    return out


def _replace(graph, found, new_nodes: list) -> None:
    """The head's nodes out, new_nodes at the second Transpose's place (their input comes before
    it, their readers after); nodes are matched by their (unique) first output."""
    left, m, right, left_alone = found
    gone = {m.output[0], right.output[0]} | ({left.output[0]} if left_alone else set())
    nodes = []
    for n in graph.node:
        if n.output[0] == right.output[0]:
            nodes.extend(new_nodes)
        elif n.output[0] not in gone:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    vi = [v for v in graph.value_info if v.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(vi)


def _untie_one(graph, initializers: dict) -> int:
    from onnx import helper, numpy_helper

    found = tied_head(graph, initializers)
    if found is None:
        return 0
    left, m, right, _ = found
    graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(initializers[m.input[0]]).T.copy(), WEIGHT))
    _replace(graph, found, [helper.make_node("MatMul", [left.input[0], WEIGHT], [right.output[0]], name=NODE)])
    return 1  # one LM head per graph


def single_row_one(graph, initializers: dict) -> int:
    """single_row_head on one graph (the decode branch; bench/peer/products_graph.py's graph)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    found = tied_head(graph, initializers)
    if found is None or initializers[found[1].input[0]].data_type != TensorProto.FLOAT:
        return 0
    left, m, right, left_alone = found
    if len(left.attribute[0].ints) != 2:  # Gemm takes [rows, hidden] only
        return 0
    x, w, y = left.input[0], m.input[0], right.output[0]
    out = lambda name: [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)]
    one = helper.make_graph([helper.make_node("Gemm", [x, w], [f"{y}/one_row"], name=f"{SINGLE_ROW}/Gemm", transB=1)],
                            "lm_head_one_row", [], out(f"{y}/one_row"))
    # The tied form as the exporter wrote it, its result renamed inside the branch (collapse restores it).
    tied_nodes = [_copy(n) for n in ([left] if left_alone else []) + [m, right]]
    tied_nodes[-1].output[0] = f"{y}/rows"
    for i, n in enumerate(tied_nodes):  # named as the head's (the step profile's LM head group)
        n.name = f"{SINGLE_ROW}/rows/{n.op_type}_{i}"
    tied = helper.make_graph(tied_nodes, "lm_head_rows", [], out(f"{y}/rows"))
    # Constants as nodes, not initializers: nfcot.onnx_weights reads named initializers as weights.
    one_row = numpy_helper.from_array(np.array(1, np.int64), f"{SINGLE_ROW}/one")
    _replace(graph, found, [
        helper.make_node("Constant", [], [f"{SINGLE_ROW}/one"], name=f"{SINGLE_ROW}/one", value=one_row),
        helper.make_node("Shape", [x], [f"{SINGLE_ROW}/rows"], name=f"{SINGLE_ROW}/Shape", start=0, end=1),
        helper.make_node("Squeeze", [f"{SINGLE_ROW}/rows"], [f"{SINGLE_ROW}/n"], name=f"{SINGLE_ROW}/Squeeze"),
        helper.make_node("Equal", [f"{SINGLE_ROW}/n", f"{SINGLE_ROW}/one"], [f"{SINGLE_ROW}/cond"],
                         name=f"{SINGLE_ROW}/Equal"),
        helper.make_node("If", [f"{SINGLE_ROW}/cond"], [y], name=f"{SINGLE_ROW}/If", then_branch=one,
                         else_branch=tied)])
    return 1


def _collapse_one(graph) -> int:
    node = next((n for n in graph.node if n.op_type == "If" and n.name == f"{SINGLE_ROW}/If"), None)
    if node is None:
        return 0
    tied = next(a.g for a in node.attribute if a.name == "else_branch")
    y = node.output[0]
    restored = [_copy(n) for n in tied.node]
    restored[-1].output[0] = y
    at = list(graph.node).index(node)
    nodes = [n for n in graph.node[:at] if not n.name.startswith(f"{SINGLE_ROW}/")] + restored + list(graph.node[at + 1:])
    del graph.node[:]
    graph.node.extend(nodes)
    return 1


def single_row_head(model) -> int:
    """In place: the float32 tied LM head of a fused export's decode branch becomes If(output rows
    == 1, Gemm(x, W, transB=1), (W x^T)^T). Returns 1 if it did (0: untied, quantized or plain)."""
    graphs = branches(model.graph)
    if len(graphs) == 1:
        return 0
    outer = {i.name: i for i in model.graph.initializer}
    return single_row_one(graphs[0], {**outer, **{i.name: i for i in graphs[0].initializer}})


def add_single_row_head(path: str) -> int:
    """single_row_head on the backbone at path; the weights stay where they are (a graph with
    external data is read and written without them)."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    n = single_row_head(model)
    if n:
        onnx.save_model(model, path)
    return n


def collapse_single_row_head(model) -> int:
    """In place: undoes single_row_head (the tied form alone). Returns how many heads."""
    return sum(_collapse_one(g) for g in branches(model.graph))


def untie(model) -> int:
    """In place: every tied LM head of the backbone (both branches of a fused export) becomes
    MatMul(x, W^T). Returns how many were rewritten (0 for an untied model)."""
    outer = {i.name: i for i in model.graph.initializer}
    n = 0
    for g in branches(model.graph):
        n += _untie_one(g, {**outer, **{i.name: i for i in g.initializer}})
    return n
