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
"""
from __future__ import annotations

from .fused_graph import branches

NODE = "/lm_head/MatMul"  # the untied exporter's name, so `--keep lm_head` matches it too
WEIGHT = "lm_head.weight_untied"


def _swaps_last_two(node) -> bool:
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
    return perm is not None and len(perm) >= 2 and perm[-2:] == [len(perm) - 1, len(perm) - 2] \
        and perm[:-2] == list(range(len(perm) - 2))


def _untie_one(graph, initializers: dict) -> int:
    from onnx import helper, numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    for m in graph.node:
        # The exporter names the embedding after its module (m.model.embed_tokens.weight).
        if m.op_type != "MatMul" or m.input[0] not in initializers or "embed_tokens" not in m.input[0]:
            continue
        w = initializers[m.input[0]]
        left = producer.get(m.input[1])
        after = readers.get(m.output[0], [])
        if len(w.dims) != 2 or left is None or left.op_type != "Transpose" or not _swaps_last_two(left) \
                or len(after) != 1 or after[0].op_type != "Transpose" or not _swaps_last_two(after[0]):
            continue
        right = after[0]
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), WEIGHT))
        head = helper.make_node("MatMul", [left.input[0], WEIGHT], [right.output[0]], name=NODE)
        # Nodes by their (unique) first output; the head takes the second Transpose's place: its
        # input comes before it, its readers after.
        gone = {m.output[0]} | ({left.output[0]} if len(readers[left.output[0]]) == 1 else set())
        nodes = [head if n.output[0] == right.output[0] else n for n in graph.node if n.output[0] not in gone]
        del graph.node[:]
        graph.node.extend(nodes)
        vi = [v for v in graph.value_info if v.name not in gone]
        del graph.value_info[:]
        graph.value_info.extend(vi)
        return 1  # one LM head per graph
    return 0


def untie(model) -> int:
    """In place: every tied LM head of the backbone (both branches of a fused export) becomes
    MatMul(x, W^T). Returns how many were rewritten (0 for an untied model)."""
    outer = {i.name: i for i in model.graph.initializer}
    n = 0
    for g in branches(model.graph):
        n += _untie_one(g, {**outer, **{i.name: i for i in g.initializer}})
    return n
