"""`nfcot.export --weights`: the export CLI hands the graph to onnxruntime's quantizers (in the
venv scripts/test-deps.sh makes) and records the precision in the manifest."""
import json
import os
import subprocess
import sys

import pytest
import torch

from nfcot.export import ORT_VENV, main
from nfcot.quantize import BLOCK

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ops(path):
    # Op types are plain strings in the protobuf.
    return open(path, "rb").read()


@pytest.mark.parametrize("weights,dtype", [("int4", "int4"), ("int8", "int8"), ("fp16", "float16")])
def test_export_weights(tmp_path, weights, dtype):
    out = str(tmp_path / "m")
    main(["--preset", "tiny", "--out", out, "--weights", weights])
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["weights"]["dtype"] == dtype
    assert m["weights"]["tool"].startswith("onnxruntime ")
    assert (b"MatMulNBits" in _ops(os.path.join(out, "backbone.onnx"))) == (weights != "fp16")
    if weights != "fp16":
        assert m["weights"]["kept_float32"] == ["nf_head", "thought_proj"]
        assert m["weights"]["block_size"] == BLOCK == 64


def test_export_keep_none_quantizes_the_heads_too(tmp_path):
    out = str(tmp_path / "m")
    main(["--preset", "tiny", "--out", out, "--weights", "int4", "--keep", ""])
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["weights"]["kept_float32"] == [] and m["weights"]["kept_nodes"] == 0


def test_export_block(tmp_path, capsys):
    out = str(tmp_path / "m")
    main(["--preset", "tiny", "--out", out, "--weights", "int4", "--block", "128"])
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["weights"]["block_size"] == 128
    r = subprocess.run([os.path.join(ORT_VENV, "bin", "python"), "-c", f"""
import onnx
from nfcot.fused_graph import branches
g = onnx.load({os.path.join(out, 'backbone.onnx')!r}).graph
print(sorted({{a.i for b in branches(g) for n in b.node if n.op_type == 'MatMulNBits'
              for a in n.attribute if a.name == 'block_size'}}))
"""], cwd=MODELS, capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[128]"
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--out", str(tmp_path / "f"), "--block", "128"])
    assert "--block applies to --weights int8 / int4 only" in capsys.readouterr().err


def test_keep_is_refused_for_float_weights(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--out", str(tmp_path / "m"), "--weights", "fp16", "--keep", "lm_head"])
    assert "--keep applies to --weights int8 / int4 only" in capsys.readouterr().err


def test_missing_venv_is_named_before_any_export(tmp_path):
    env = {**os.environ, "NFCOT_ORT_PYTHON": str(tmp_path / "nope" / "python")}
    r = subprocess.run([sys.executable, "-m", "nfcot.export", "--preset", "tiny", "--out", str(tmp_path / "m"),
                        "--weights", "int8"], cwd=MODELS, env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "run `npm run test:deps`" in r.stderr
    assert not os.path.exists(tmp_path / "m")
    assert ORT_VENV.endswith(".venv-ort")


def test_export_float16_kv(tmp_path):
    out = str(tmp_path / "m")
    main(["--preset", "tiny", "--out", out, "--kv-dtype", "float16"])
    m = json.load(open(os.path.join(out, "manifest.json")))
    assert m["kv_cache"]["dtype"] == "float16"
    io = {x["name"]: x["dtype"] for x in m["graphs"]["backbone"]["inputs"] + m["graphs"]["backbone"]["outputs"]}
    assert io["kv_pool"] == io["new_kv"] == "float16" and io["logits"] == "float32"
    assert "weights" not in m  # float32 weights: the exporter's manifest as it was


@pytest.mark.parametrize("weights,keep", [("int4", None), ("int8", None), ("int4", "lm_head")])
def test_tied_lm_head_gets_a_quantized_copy(tmp_path, weights, keep):
    """A tied head is written (W x^T)^T over the embedding (one copy in the file); at int8 / int4
    it becomes MatMulNBits over W's own quantized copy, the embedding stays float32 for the
    Gather. `--keep lm_head` leaves the tied form."""
    from nfcot.export import requantize
    from nfcot.hf_export import export_hf
    from nfcot.hf_fixture import write_tiny
    write_tiny(str(tmp_path / "hf"), "qwen3", 3, 1, torch.float32, False)
    out = str(tmp_path / "m")
    export_hf(str(tmp_path / "hf"), out)
    requantize(out, weights, keep)
    m = json.load(open(os.path.join(out, "manifest.json")))
    V, H = m["architecture"]["vocab_size"], m["architecture"]["hidden_size"]
    r = subprocess.run([os.path.join(ORT_VENV, "bin", "python"), "-c", f"""
import json, onnx
g = onnx.load({os.path.join(out, 'backbone.onnx')!r}).graph
init = {{i.name: list(i.dims) for i in g.initializer}}
print(json.dumps({{"heads": [[n.op_type, n.name, {{a.name: a.i for a in n.attribute if a.type == 2}}] for n in g.node
                            if "lm_head" in n.name or "m.model.embed_tokens.weight" in n.input],
                  "embedding": init.get("m.model.embed_tokens.weight"), "float_copy": "lm_head.weight_untied" in init}}))
"""], capture_output=True, text=True, check=True)
    g = json.loads(r.stdout)
    assert g["embedding"] == [V, H] and not g["float_copy"]
    ops = sorted(op for op, _, _ in g["heads"])
    if keep:
        assert "tied_lm_head" not in m["weights"]
        assert ops == ["Gather", "MatMul"]  # the tied (W x^T)^T, float32
    else:
        assert m["weights"]["tied_lm_head"] == "quantized copy"
        assert ops == ["Gather", "MatMulNBits"]
        head = next(a for op, _, a in g["heads"] if op == "MatMulNBits")
        assert (head["N"], head["K"], head["bits"], head["block_size"]) == (V, H, 8 if weights == "int8" else 4, BLOCK)
