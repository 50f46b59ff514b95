import pytest
import torch

from nfcot import tokenizer as tk
from nfcot.export import PRESETS, export_dir
from nfcot.model import ModelConfig, NFCoTModel
from nfcot.paged import PagedBackbone
from nfcot.parity import make_case
import base64
import numpy as np


def _arr(x):
    return torch.from_numpy(np.frombuffer(base64.b64decode(x["data"]), dtype=x["dtype"]).reshape(x["shape"]).copy())


def _model(seed=0):
    torch.manual_seed(seed)
    m = NFCoTModel(ModelConfig(vocab_size=len(tk.VOCAB), **PRESETS["tiny"]))
    torch.nn.init.normal_(m.nf_head.weight, 0, 0.1)
    return m.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_paged_forward_matches_dense_forward(seed):
    m = _model(seed)
    case = make_case(m, seed)
    inp = {k: _arr(v) for k, v in case["inputs"].items()}
    with torch.no_grad():
        logits, mu, ls, new_kv = PagedBackbone(m)(**inp)
    exp = {k: _arr(v) for k, v in case["expected"].items()}
    assert torch.allclose(logits, exp["logits"], atol=1e-5)
    assert torch.allclose(mu, exp["mu"], atol=1e-5)
    assert torch.allclose(ls, exp["log_sigma"], atol=1e-5)
    for r, n in enumerate(case["new_lens"]):
        assert torch.allclose(new_kv[:, :, r, :, :n], exp["new_kv"][:, :, r, :, :n], atol=1e-5)


def test_exporter_refuses_inconsistent_configs(tmp_path):
    with pytest.raises(ValueError, match="num_kv_heads"):
        NFCoTModel(ModelConfig(vocab_size=10, hidden_size=64, num_heads=4, num_kv_heads=3))
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig(vocab_size=10, hidden_size=66, num_heads=4).validate()


# Manifest dims that name a size of the model: fixed numbers in the graphs.
def _model_dims(manifest):
    a, lat = manifest["architecture"], manifest["latent"]
    return {"vocab_size": a["vocab_size"], "num_layers": a["num_layers"], "num_kv_heads": a["num_kv_heads"],
            "head_dim": a["head_dim"], "thought_dim": lat["thought_dim"], "num_thoughts": lat["num_thoughts"]}


def check_contract(d) -> None:
    """The manifest describes each graph exactly (models/README.md's contract): the same input and
    output names in order, dtypes, ranks; a dim the manifest names after a model size is that number
    in the graph; an input dim it names otherwise (batch, seq, num_blocks, ...) is symbolic, under
    that name. Output dims the exporter left symbolic are sized by running the graph
    (test/model-load.test.ts)."""
    import json
    import os
    import onnx
    from onnx import TensorProto
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    fixed = _model_dims(manifest)
    a = manifest["architecture"]
    assert a["head_dim"] * a["num_heads"] == a["hidden_size"]
    assert manifest["max_context"] == a["max_position"]
    assert manifest["latent"]["num_thoughts"] == a["num_thoughts"] and manifest["latent"]["thought_dim"] == a["thought_dim"]
    assert manifest["kv_cache"]["layout"] == manifest["graphs"]["backbone"]["inputs"][5]["shape"]
    assert sorted(os.listdir(d)) == sorted({manifest["tokenizer"], manifest["tokenizer_config"], manifest["chat_template"],
                                            "manifest.json", *(g["file"] for g in manifest["graphs"].values())})
    dtypes = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}
    for name, spec in manifest["graphs"].items():
        g = onnx.load(os.path.join(d, spec["file"])).graph
        onnx.checker.check_model(onnx.load(os.path.join(d, spec["file"])))
        for kind, want, have in (("input", spec["inputs"], g.input), ("output", spec["outputs"], g.output)):
            assert [x.name for x in have] == [w["name"] for w in want], f"{name} {kind}s"
            for w, h in zip(want, have):
                t = h.type.tensor_type
                assert t.elem_type == dtypes[w["dtype"]], f"{name} {kind} {w['name']} dtype"
                dims = [x.dim_param or x.dim_value for x in t.shape.dim]
                assert len(dims) == len(w["shape"]), f"{name} {kind} {w['name']} rank"
                for i, (wd, hd) in enumerate(zip(w["shape"], dims)):
                    where = f"{name} {kind} {w['name']} dim {i}"
                    if isinstance(wd, int) or wd in fixed:
                        want_n = wd if isinstance(wd, int) else fixed[wd]
                        assert hd == want_n or (kind == "output" and isinstance(hd, str)), f"{where}: {hd} != {want_n}"
                    else:
                        assert hd == wd, f"{where}: {hd!r} != {wd!r}"


def test_export_writes_the_contract(tmp_path):
    m = _model()
    from nfcot.flow import ShallowFlow
    from nfcot.vae import StepVAE
    c = m.config
    manifest = export_dir(str(tmp_path), m, ShallowFlow(c.thought_dim, c.num_thoughts), StepVAE(c.vocab_size, c.thought_dim), "t")
    assert list(manifest["graphs"]) == ["backbone", "flow_forward", "flow_inverse", "thought_decoder"]
    assert [i["name"] for i in manifest["graphs"]["backbone"]["inputs"]] == [
        "input_ids", "thought_inputs", "is_thought", "positions", "past_lens", "kv_pool", "block_tables", "gather_index"]
    assert [i["name"] for i in manifest["graphs"]["backbone"]["outputs"]] == [
        "logits", "mu", "log_sigma", "new_kv", "top_logits", "top_ids"]
    assert manifest["architecture"]["num_layers"] == 2 and manifest["architecture"]["head_dim"] == 16
    assert manifest["graphs"]["thought_decoder"]["stop_token_id"] == tk.EOT
    check_contract(tmp_path)


def test_the_shipped_model_keeps_the_contract():
    import os
    check_contract(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nfcot-trace-small"))


def test_the_contract_check_refuses_a_manifest_that_disagrees(tmp_path):
    import json
    m = _model()
    export_dir(str(tmp_path), m, None, None, "t")
    path = tmp_path / "manifest.json"
    good = json.loads(path.read_text())
    for edit, msg in ((lambda x: x["graphs"]["backbone"]["inputs"][3].update(dtype="float32"), "positions dtype"),
                      (lambda x: x["graphs"]["backbone"]["inputs"][1]["shape"].__setitem__(2, 8), "thought_inputs dim 2"),
                      (lambda x: x["graphs"]["backbone"]["outputs"].reverse(), "backbone outputs"),
                      (lambda x: x["graphs"]["backbone"]["inputs"][0]["shape"].__setitem__(1, "tokens"), "input_ids dim 1")):
        bad = json.loads(json.dumps(good))
        edit(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(AssertionError, match=msg):
            check_contract(tmp_path)
    path.write_text(json.dumps(good))
    check_contract(tmp_path)


def test_positional_heads_read_exactly_the_token_their_offset_back():
    m = _model()
    c = m.config
    x = torch.randn(2, 7, c.hidden_size)
    layer = m.model.layers[0]
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3, 4]])  # row 1 left-padded by 2
    key_mask = torch.tensor([[True] * 7, [False, False] + [True] * 5])
    cos, sin = m.rope_cos[positions], m.rope_sin[positions]
    q, k, v = layer.self_attn.qkv(x, cos, sin)
    from nfcot.model import layer0_bias
    k_pos = key_mask.long().cumsum(1) - 1
    allowed = torch.ones(7, 7, dtype=torch.bool).tril()[None] & key_mask[:, None, :]
    p = torch.softmax(q @ k.transpose(-1, -2) + layer0_bias(c, positions, k_pos, allowed), -1)
    g, S = c.num_heads // c.num_kv_heads, 7
    for h, off in enumerate(c.positional_heads):
        ph = p[:, h // g, (h % g) * S:(h % g + 1) * S]            # [B, S, T]
        for b, pad in ((0, 0), (1, 2)):
            for s in range(pad, S):
                want = pad + max(int(positions[b, s]) - off, 0)
                assert ph[b, s].argmax().item() == want and ph[b, s, want].item() == 1.0
    free = p[0, (len(c.positional_heads)) // g, (len(c.positional_heads) % g) * S:][:S]
    assert (free[6] > 0).all()  # a learned head still spreads over every earlier key


def test_configs_saved_before_positional_heads_load_without_them():
    d = ModelConfig(vocab_size=10).to_dict()
    assert d["positional_heads"] == [1, 2, 3]
    del d["positional_heads"]
    assert ModelConfig.from_dict(d).positional_heads == ()
    with pytest.raises(ValueError, match="positional_heads"):
        ModelConfig(vocab_size=10, positional_heads=(1, 0)).validate()
