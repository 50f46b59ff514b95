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


def test_export_writes_the_contract(tmp_path):
    m = _model()
    manifest = export_dir(str(tmp_path), m, None, None, "t")
    assert manifest["graphs"]["backbone"]["file"] == "backbone.onnx"
    assert [i["name"] for i in manifest["graphs"]["backbone"]["inputs"]] == [
        "input_ids", "thought_inputs", "is_thought", "positions", "past_lens", "kv_pool", "block_tables", "gather_index"]
    assert (tmp_path / "backbone.onnx").stat().st_size > 0
    assert (tmp_path / "tokenizer.json").exists() and (tmp_path / "chat_template.jinja").exists()


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
