"""merge_sibling_matmuls: the fused export's decode branch runs a layer's q / k / v and gate / up
products as one MatMul each; the plain branch (whose names nfcot.onnx_weights reads) is untouched.
Numeric parity of whole exports through onnxruntime-node: test/model-parity.test.ts."""
import json
import os
import subprocess

import numpy as np
from onnx import TensorProto, helper, load, numpy_helper

from nfcot.export import ORT_VENV, main
from nfcot.fused_graph import branches, merge_sibling_matmuls

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _matmuls(graph):
    return [n.name for n in graph.node if n.op_type == "MatMul"]


def test_fused_export_merges_each_layers_siblings(tmp_path):
    main(["--preset", "tiny", "--out", str(tmp_path / "f")])
    main(["--preset", "tiny", "--out", str(tmp_path / "p"), "--attention", "plain"])
    a = json.load(open(tmp_path / "f" / "manifest.json"))["architecture"]
    decode, plain = branches(load(str(tmp_path / "f" / "backbone.onnx")).graph)
    layers = [""] + [f"_{i}" for i in range(1, a["num_layers"])]
    assert [n for n in _matmuls(decode) if "_proj" in n and "thought" not in n] == [
        x for s in layers for x in (f"decode//q_proj{s}+/k_proj{s}+/v_proj{s}/MatMul", f"decode//o_proj{s}/MatMul",
                                    f"decode//mlp/gate_proj{s}+/mlp/up_proj{s}/MatMul", f"decode//mlp/down_proj{s}/MatMul")]
    assert "decode//lm_head/MatMul" in _matmuls(decode)
    hd = a["head_dim"]
    sizes = {i.name: numpy_helper.to_array(i).tolist() for i in decode.initializer if i.name.endswith("/sizes")}
    assert sizes["decode//q_proj+/k_proj+/v_proj/sizes"] == [a["num_heads"] * hd, a["num_kv_heads"] * hd, a["num_kv_heads"] * hd]
    assert sizes["decode//mlp/gate_proj+/mlp/up_proj/sizes"] == [a["intermediate_size"]] * 2
    # The replaced weights are gone: no initializer without a reader.
    used = {i for n in decode.node for i in n.input}
    assert [i.name for i in decode.initializer if i.name not in used] == []
    # The plain branch is the plain export's graph.
    assert _matmuls(plain) == _matmuls(load(str(tmp_path / "p" / "backbone.onnx")).graph)


def test_decode_branch_reads_the_gathered_past_without_copying_it(tmp_path):
    """Each layer's gathered past K / V reaches the products through a Reshape only (a Concat with
    the new key had copied it a second time): two FusedMatMul scores and one MatMul per layer."""
    main(["--preset", "tiny", "--out", str(tmp_path / "f")])
    layers = json.load(open(tmp_path / "f" / "manifest.json"))["architecture"]["num_layers"]
    decode, _ = branches(load(str(tmp_path / "f" / "backbone.onnx")).graph)
    readers = {}
    for n in decode.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    rows = [n.output[0] for n in decode.node if n.op_type == "Reshape" and n.input[0] == "kv_pool"]
    assert len(rows) == 1
    gathers = [n for n in readers[rows[0]] if n.op_type == "Gather"]
    assert len(gathers) == 2 * layers
    for gather in gathers:
        (view,) = readers[gather.output[0]]
        assert view.op_type == "Reshape"
        assert sorted(n.op_type for n in readers[view.output[0]]) in (["FusedMatMul"], ["MatMul"])
    ops = [n.op_type for n in decode.node]
    assert ops.count("FusedMatMul") == 2 * layers and ops.count("Softmax") == layers
    assert "MultiHeadAttention" not in ops and "GroupQueryAttention" not in ops


def _toy():
    """x feeds q / k / v (K = 4) and y feeds an LM head and an NF head: only q / k / v merge."""
    rng = np.random.default_rng(0)
    w = {n: rng.standard_normal((4, k)).astype(np.float32) for n, k in
         [("wq", 6), ("wk", 2), ("wv", 2), ("wl", 5), ("wn", 3)]}
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="/q_proj/MatMul"),
             helper.make_node("Relu", ["x"], ["y"], name="/relu"),
             helper.make_node("MatMul", ["y", "wl"], ["l"], name="/lm_head/MatMul"),
             helper.make_node("MatMul", ["x", "wk"], ["k"], name="/k_proj/MatMul"),
             helper.make_node("MatMul", ["y", "wn"], ["m"], name="/nf_head/MatMul"),
             helper.make_node("MatMul", ["x", "wv"], ["v"], name="/v_proj/MatMul")]
    io = lambda n, d: helper.make_tensor_value_info(n, TensorProto.FLOAT, d)  # noqa: E731
    g = helper.make_graph(nodes, "toy", [io("x", [3, 4])], [io(o, None) for o in "qklmv"],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_merge_keeps_every_output_and_the_heads_apart(tmp_path):
    m = _toy()
    (tmp_path / "a.onnx").write_bytes(m.SerializeToString())
    assert merge_sibling_matmuls(m) == 2
    assert _matmuls(m.graph) == ["/q_proj+/k_proj+/v_proj/MatMul", "/lm_head/MatMul", "/nf_head/MatMul"]
    assert sorted(i.name for i in m.graph.initializer) == ["/q_proj+/k_proj+/v_proj/sizes",
                                                           "/q_proj+/k_proj+/v_proj/weight", "wl", "wn"]
    (tmp_path / "b.onnx").write_bytes(m.SerializeToString())
    # Same outputs through onnxruntime (its venv), bit for bit: a column of a product does not
    # depend on the other columns.
    r = subprocess.run([os.path.join(ORT_VENV, "bin", "python"), "-c", f"""
import numpy as np, onnxruntime as ort
x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
a, b = (ort.InferenceSession({str(tmp_path)!r} + f).run(None, {{"x": x}}) for f in ("/a.onnx", "/b.onnx"))
print([bool(np.array_equal(p, q)) for p, q in zip(a, b)])
"""], cwd=MODELS, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[True, True, True, True, True]"


def test_keeping_a_member_keeps_the_merged_product(tmp_path):
    out = str(tmp_path / "q")
    main(["--preset", "tiny", "--out", out, "--weights", "int4", "--keep", "q_proj"])
    decode, plain = branches(load(os.path.join(out, "backbone.onnx")).graph)
    # The quantizer names its nodes <name>_Q4; the decode branch's are prefixed decode/.
    ops = lambda g: {n.name.removeprefix("decode/").removesuffix("_Q4"): n.op_type  # noqa: E731
                     for n in g.node if n.op_type.startswith("MatMul")}
    d, p = ops(decode), ops(plain)
    assert d["/q_proj+/k_proj+/v_proj/MatMul"] == "MatMul" and d["/mlp/gate_proj+/mlp/up_proj/MatMul"] == "MatMulNBits"
    assert p["/q_proj/MatMul"] == "MatMul" and p["/k_proj/MatMul"] == "MatMulNBits"
