"""A fused export's float32 tied LM head in its decode branch (nfcot/tied_head.py,
single_row_head): one output row takes Gemm(x, W, transB=1) over the embedding itself, more rows
the tied (W x^T)^T; the quantizers get the tied form back."""
import json
import os
import subprocess

import onnx
import torch

from nfcot.export import ORT_VENV, main, requantize
from nfcot.fused_graph import branches
from nfcot.hf_export import export_hf
from nfcot.hf_fixture import write_tiny
from nfcot.tied_head import SINGLE_ROW

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBED = "m.model.embed_tokens.weight"


def _tied_export(tmp_path, attention="plain") -> str:
    write_tiny(str(tmp_path / "hf"), "qwen3", 3, 1, torch.float32, False)
    out = str(tmp_path / "m")
    export_hf(str(tmp_path / "hf"), out, attention=attention)
    return out


def _branch(node, name):
    return next(a.g for a in node.attribute if a.name == name)


def test_a_fused_exports_decode_branch_gets_a_single_row_gemm_over_the_embedding(tmp_path):
    out = _tied_export(tmp_path, "fused")
    model = onnx.load(os.path.join(out, "backbone.onnx"))
    decode, plain = branches(model.graph)
    heads = [n for n in decode.node if n.name == f"{SINGLE_ROW}/If"]
    assert len(heads) == 1
    one, rows = _branch(heads[0], "then_branch"), _branch(heads[0], "else_branch")
    embed = next(i.name for i in decode.initializer if i.name.endswith(EMBED))
    assert [(n.op_type, list(n.input)[1], [a.i for a in n.attribute if a.name == "transB"]) for n in one.node] \
        == [("Gemm", embed, [1])]
    assert [n.op_type for n in rows.node] == ["Transpose", "MatMul", "Transpose"]
    assert rows.node[1].input[0] == embed
    # No initializer added to the file (onnxruntime prepacks its copy at load), none inside the If.
    assert not one.initializer and not rows.initializer
    assert not any("lm_head" in i.name for i in decode.initializer)
    # The plain branch (prefill chunks, big batches) keeps the tied form alone.
    assert not any(n.op_type == "If" for n in plain.node)
    assert any(n.op_type == "MatMul" and n.input[0] == EMBED for n in plain.node)


def test_a_plain_export_keeps_the_tied_form(tmp_path):
    """A plain export holds each weight once; the single-row form would add a prepacked copy."""
    out = _tied_export(tmp_path, "plain")
    assert SINGLE_ROW.encode() not in open(os.path.join(out, "backbone.onnx"), "rb").read()


def test_single_row_logits_equal_the_tied_forms_and_quantizing_restores_it(tmp_path):
    """Through onnxruntime: decode steps (one position per row, the decode branch) with 1 and 3
    rows against the same graph with the tied form alone (collapse_single_row_head); 3 rows run
    the same nodes (identical), 1 row the Gemm (float rounding)."""
    out = _tied_export(tmp_path, "fused")
    r = subprocess.run([os.path.join(ORT_VENV, "bin", "python"), "-c", f"""
import json, numpy as np, onnx, onnxruntime as ort
from nfcot.tied_head import collapse_single_row_head
out = {out!r}
m = json.load(open(out + "/manifest.json"))
a = m["architecture"]
model = onnx.load(out + "/backbone.onnx")
assert collapse_single_row_head(model) == 1
tied = ort.InferenceSession(model.SerializeToString())
ours = ort.InferenceSession(out + "/backbone.onnx")
rng = np.random.default_rng(0)
BS = 4
pool = rng.standard_normal((3, a["num_layers"], 2, a["num_kv_heads"], BS, a["head_dim"])).astype(np.float32)
res = {{}}
for B in (1, 3):  # decode steps: one new position per row, over a past of 2..4 positions
    past = np.arange(2, 2 + B)
    f = dict(input_ids=rng.integers(0, a["vocab_size"], (B, 1)), positions=past[:, None].astype(np.int64),
             past_lens=past.astype(np.int64), block_tables=np.arange(B, dtype=np.int64)[:, None],
             kv_pool=pool, gather_index=np.arange(B, dtype=np.int64))
    x, y = (s.run(["logits"], f)[0] for s in (ours, tied))
    res[B] = [float(np.abs(x - y).max() / np.abs(y).max()), list(x.shape)]
print(json.dumps(res))
"""], cwd=MODELS, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    V = json.load(open(os.path.join(out, "manifest.json")))["architecture"]["vocab_size"]
    assert res["1"][1] == [1, V] and res["3"][1] == [3, V]
    assert res["3"][0] == 0.0
    assert res["1"][0] < 1e-5
    # The quantizers get the tied form back (their own test checks the quantized head).
    requantize(out, "int8", None)
    assert SINGLE_ROW.encode() not in open(os.path.join(out, "backbone.onnx"), "rb").read()


def test_an_untied_head_is_left_alone(tmp_path):
    out = str(tmp_path / "m")
    main(["--preset", "tiny", "--out", out])
    assert SINGLE_ROW.encode() not in open(os.path.join(out, "backbone.onnx"), "rb").read()
