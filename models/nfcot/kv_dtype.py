"""A float16 KV cache for an exported backbone: graph surgery on backbone.onnx (no re-export, so
it applies to a shipped model directory as well as to a fresh export).

kv_pool becomes a float16 input and new_kv a float16 output. The pool is never converted as a
whole: each per-layer Gather of a row's blocks is followed by a Cast to float32 (a float32 graph)
and the new K/V are cast once on the way out. In a float16 graph (--weights fp16) the float16
converter's own casts at kv_pool / new_kv are removed instead: no cast at all. The runner keeps
the pool as a Uint16Array of float16 bits and copies new K/V in bit for bit (no conversion in JS).
"""
from __future__ import annotations

from onnx import TensorProto, helper

from .fused_graph import branches


def _consumers(graph, name):
    return [n for n in graph.node if name in n.input]


def _producer(graph, name):
    return next((n for n in graph.node if name in n.output), None)


def _io(items, name):
    return next(x for x in items if x.name == name)


def _is_cast(node, to) -> bool:
    return node is not None and node.op_type == "Cast" and any(a.name == "to" and a.i == to for a in node.attribute)


def _cast_pool_reads(g) -> None:
    cons = _consumers(g, "kv_pool")
    cast_in = [n for n in cons if _is_cast(n, TensorProto.FLOAT16)]
    if cast_in:  # a float16 graph: drop the converter's float32 -> float16 cast of the input
        for c in cast_in:
            for n in _consumers(g, c.output[0]):
                n.input[:] = ["kv_pool" if i == c.output[0] else i for i in n.input]
            g.node.remove(c)
        return
    # A float32 graph: cast what each Gather reads out of the pool.
    reshapes = [n for n in cons if n.op_type == "Reshape"]
    if len(reshapes) != 1:
        raise ValueError(f"kv_pool feeds {[n.op_type for n in cons]}: expected one Reshape (nfcot/paged.py)")
    gathers = [n for n in _consumers(g, reshapes[0].output[0]) if n.op_type == "Gather" and n.input[0] == reshapes[0].output[0]]
    if not gathers:
        raise ValueError("no Gather reads the reshaped kv_pool")
    for n in gathers:
        out = n.output[0]
        n.output[0] = out + "_f16"
        at = list(g.node).index(n) + 1
        g.node.insert(at, helper.make_node("Cast", [out + "_f16"], [out], name=n.name + "_kv_f32", to=TensorProto.FLOAT))


def kv_to_float16(model):
    """Rewrites model (a backbone ModelProto) in place to take kv_pool and give new_kv in float16."""
    g = model.graph
    pool_in = _io(g.input, "kv_pool")
    new_out = _io(g.output, "new_kv")
    if pool_in.type.tensor_type.elem_type == TensorProto.FLOAT16:
        return model
    pool_in.type.tensor_type.elem_type = TensorProto.FLOAT16
    new_out.type.tensor_type.elem_type = TensorProto.FLOAT16
    # Input side, in each graph that reads the pool (both branches of a fused export).
    for graph in branches(g):
        _cast_pool_reads(graph)
    # Output side.
    p = _producer(g, "new_kv")
    if _is_cast(p, TensorProto.FLOAT):  # a float16 graph: the converter's cast back to float32 goes
        src = p.input[0]
        g.node.remove(p)
        _producer(g, src).output[:] = ["new_kv" if o == src else o for o in _producer(g, src).output]
        for n in _consumers(g, src):
            n.input[:] = ["new_kv" if i == src else i for i in n.input]
    else:
        p.output[:] = ["new_kv_f32" if o == "new_kv" else o for o in p.output]
        g.node.append(helper.make_node("Cast", ["new_kv_f32"], ["new_kv"], name="new_kv_to_f16", to=TensorProto.FLOAT16))
    # Shape inference results for the renamed values are stale: drop them (onnxruntime re-infers).
    del g.value_info[:]
    return model
