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
