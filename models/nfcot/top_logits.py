"""The backbone's top-k outputs: each output row's TOP_K largest logits and their ids.

A decode step whose rows all decode greedily needs only the largest allowed logit of each row.
Fetching [N, vocab] logits from onnxruntime-node copies them into a fresh JavaScript buffer per
step (19 MB at batch 32 over Qwen3's 151,936 tokens), which the worker then scans in JavaScript,
and those buffers drive V8 into a full garbage collection most steps. One TopK after the heads
(about 2 ms at that size in onnxruntime) gives the runner [N, TOP_K] instead; the engine falls
back to the full logits when a row's banned ids (ids with no token, EOS under ignore_eos, ...)
cover all TOP_K. Ties keep the lower id first (ONNX TopK), as the engine's greedy argmax does.
"""
from __future__ import annotations

TOP_K = 16


def top_outputs(vocab_size: int) -> list[dict]:
    """The manifest's entries for the two outputs (k is the vocabulary when it is smaller)."""
    k = min(TOP_K, vocab_size)
    return [{"name": "top_logits", "dtype": "float32", "shape": ["num_outputs", k]},
            {"name": "top_ids", "dtype": "int64", "shape": ["num_outputs", k]}]


def add_top_outputs(path: str, vocab_size: int) -> None:
    """Appends TopK(logits) to the backbone at path as outputs top_logits / top_ids. The weights
    stay where they are: a graph with external data is read and written without them. A step with
    no output rows (a prefill chunk short of its prompt's end) gives [0, k]: onnxruntime's TopK
    stops the process with SIGFPE on zero rows, so it runs inside an If on the row count."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = min(TOP_K, vocab_size)
    model = onnx.load(path, load_external_data=False)
    g = model.graph
    if any(o.name == "top_ids" for o in g.output):
        return
    outs = [helper.make_tensor_value_info("top_logits", TensorProto.FLOAT, ["num_outputs", k]),
            helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["num_outputs", k])]
    branch_outs = lambda tag: [helper.make_tensor_value_info(f"{o.name}/{tag}", o.type.tensor_type.elem_type, None)
                               for o in outs]
    top = helper.make_graph(
        [helper.make_node("TopK", ["logits", "top_logits/k"], ["top_logits/top", "top_ids/top"],
                          name="top_logits/TopK", axis=-1, largest=1, sorted=1)],
        "top_logits_rows", [], branch_outs("top"))
    empty = helper.make_graph(
        [helper.make_node("Constant", [], [f"{name}/none"], name=f"{name}/none",
                          value=numpy_helper.from_array(np.zeros((0, k), dtype), f"{name}/none"))
         for name, dtype in (("top_logits", np.float32), ("top_ids", np.int64))],
        "top_logits_no_rows", [], branch_outs("none"))
    # Constants as nodes, not initializers: nfcot.onnx_weights reads named initializers as weights.
    const = lambda name, value: helper.make_node("Constant", [], [name], name=name,
                                                 value=numpy_helper.from_array(value, name))
    g.node.extend([
        const("top_logits/k", np.array([k], np.int64)),
        const("top_logits/zero", np.array(0, np.int64)),
        helper.make_node("Shape", ["logits"], ["top_logits/rows"], name="top_logits/Shape", start=0, end=1),
        helper.make_node("Squeeze", ["top_logits/rows"], ["top_logits/n"], name="top_logits/Squeeze"),
        helper.make_node("Greater", ["top_logits/n", "top_logits/zero"], ["top_logits/any"], name="top_logits/Greater"),
        helper.make_node("If", ["top_logits/any"], ["top_logits", "top_ids"], name="top_logits/If",
                         then_branch=top, else_branch=empty),
    ])
    g.output.extend(outs)
    onnx.save_model(model, path)
