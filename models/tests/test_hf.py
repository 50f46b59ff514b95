"""The Hugging Face loader and exporter: round trips, the converter, and every refused input."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from nfcot import hf_export
from nfcot.hf import HFError, load_hf
from nfcot.hf_fixture import write_tiny
from nfcot.hf_write import write_hf
from nfcot import tokenizer as tk
from nfcot.parity import fresh_model

MODELS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _edit_json(path, **changes):
    with open(path) as f:
        d = json.load(f)
    d.update(changes)
    with open(path, "w") as f:
        json.dump(d, f)


@pytest.mark.parametrize("arch,shards,dtype", [("llama", 2, torch.bfloat16), ("llama-tied", 1, torch.float32),
                                               ("qwen2", 1, torch.float16), ("qwen3", 3, torch.float32)])
def test_loader_round_trips_every_family(tmp_path, arch, shards, dtype):
    model, _, _ = write_tiny(str(tmp_path), arch, seed=1, shards=shards, dtype=dtype)
    hm = load_hf(str(tmp_path))
    got = hm.model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(got[k], v.to(dtype).float()), k
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k not in ("thought_dim", "num_thoughts")}
    assert strip(hm.model.config) == strip(model.config)  # thought sizes mean nothing without extras
    if model.config.tie_embeddings:
        assert hm.model.lm_head.weight is hm.model.model.embed_tokens.weight
    assert hm.eos_token_ids == [tk.EOS, tk.EOT]
    assert ("bos" in hm.special_tokens) == (not arch.startswith("qwen"))


@pytest.mark.parametrize("arch", ["llama", "llama-tied", "qwen2", "qwen3"])
def test_shapes_worked_out_from_the_config_are_the_models_own(arch):
    from nfcot.hf import backbone_shapes
    from nfcot.hf_fixture import tiny_model
    model, _, _ = tiny_model(arch)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        del own["lm_head.weight"]
    assert backbone_shapes(model.config) == own


def test_llama3_rope_scaling_changes_only_long_wavelengths(tmp_path):
    from nfcot.model import rope_inv_freq
    model, _, _ = write_tiny(str(tmp_path), "llama")
    c = model.config
    scaled = rope_inv_freq(c)
    plain = rope_inv_freq(type(c)(**{**c.__dict__, "rope_scaling": None}))
    assert torch.equal(scaled[:1], plain[:1])              # short wavelengths kept
    assert plain[1] / 8.0 < scaled[1] < plain[1]           # medium ones blended
    assert torch.allclose(scaled[-1], plain[-1] / 8.0)     # the longest divided by factor


def test_our_checkpoint_converts_to_hf_and_loads_back_identically(tmp_path):
    model, flow, vae = fresh_model(4)
    write_hf(str(tmp_path), model, flow, vae, tokenizer_json=tk.tokenizer_json(),
             tokenizer_config=tk.tokenizer_config(), eos_ids=[tk.EOS], bos_id=tk.BOS)
    hm = load_hf(str(tmp_path))
    assert hm.model.config.positional_heads == model.config.positional_heads
    assert hm.special_tokens["bot"] == tk.BOT and hm.special_tokens["eot"] == tk.EOT
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=g)
    th = torch.randn(2, 9, model.config.thought_dim, generator=g)
    ist = (torch.rand(2, 9, generator=g) < 0.3).float()
    pos = torch.arange(9).repeat(2, 1)
    with torch.no_grad():
        a = model.heads(model(ids, th, ist, pos)[0])
        b = hm.model.heads(hm.model(ids, th, ist, pos)[0])
        e = torch.randn(2, model.config.num_thoughts, model.config.thought_dim, generator=g)
        assert torch.equal(flow(e)[0], hm.flow(e)[0])
        assert torch.equal(vae.decode_logits(e), hm.vae.decode_logits(e))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def _export_fails(src, out, match, **kw):
    existed = os.path.exists(out)
    with pytest.raises(HFError, match=match):
        hf_export.export_hf(str(src), str(out), **kw)
    assert existed or not os.path.exists(out)
    assert not [p for p in os.listdir(os.path.dirname(out)) if ".partial-" in p]


@pytest.fixture
def qwen3_dir(tmp_path):
    d = tmp_path / "hf"
    write_tiny(str(d), "qwen3")
    return d


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json",
                                  "model-00002-of-00002.safetensors"])
def test_missing_files_are_named(tmp_path, name):
    d = tmp_path / "hf"
    write_tiny(str(d), "qwen3", shards=2)
    os.remove(d / name)
    _export_fails(d, tmp_path / "out", name)


def test_missing_weights_file_is_named(qwen3_dir, tmp_path):
    os.remove(qwen3_dir / "model.safetensors")
    _export_fails(qwen3_dir, tmp_path / "out", "model.safetensors: missing")


@pytest.mark.parametrize("changes,match", [
    ({"architectures": ["MistralForCausalLM"]}, "MistralForCausalLM.*not supported"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling type 'yarn' is not supported"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling type 'linear' is not supported"),
    ({"use_sliding_window": True, "sliding_window": 4096}, "use_sliding_window"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
    ({"num_key_value_heads": 3}, "num_kv_heads"),
    ({"hidden_size": None}, "field hidden_size is missing"),
])
def test_unsupported_configs_are_refused_by_name(qwen3_dir, tmp_path, changes, match):
    _edit_json(qwen3_dir / "config.json", **changes)
    _export_fails(qwen3_dir, tmp_path / "out", "config.json: .*" + match)


def test_a_shape_that_disagrees_with_the_config_names_file_and_tensor(qwen3_dir, tmp_path):
    _edit_json(qwen3_dir / "config.json", intermediate_size=128)
    _export_fails(qwen3_dir, tmp_path / "out",
                  r"model.safetensors: tensor model.layers.0.mlp.(gate|up|down)_proj.weight has shape \[\d+, \d+\], "
                  r"config.json implies")


def test_untied_config_needs_lm_head(qwen3_dir, tmp_path):
    _edit_json(qwen3_dir / "config.json", tie_word_embeddings=False)
    _export_fails(qwen3_dir, tmp_path / "out", "tensor lm_head.weight is missing")


def test_unknown_tensors_are_refused(qwen3_dir, tmp_path):
    sd = load_file(str(qwen3_dir / "model.safetensors"))
    sd["model.layers.0.self_attn.rel_bias"] = torch.zeros(3)
    save_file(sd, str(qwen3_dir / "model.safetensors"))
    _export_fails(qwen3_dir, tmp_path / "out", "tensor model.layers.0.self_attn.rel_bias is not part of the architecture")


def test_a_tokenizer_larger_than_the_embedding_is_refused(qwen3_dir, tmp_path):
    # The embedding keeps 256 rows; the config claims 200 (< the tokenizer's 246 tokens).
    _edit_json(qwen3_dir / "config.json", vocab_size=200)
    _export_fails(qwen3_dir, tmp_path / "out", r"tokenizer.json: holds ids up to 245 \(246 tokens\).*vocab_size.*200")


def test_a_tokenizer_smaller_than_the_embedding_is_served(qwen3_dir, tmp_path):
    m = hf_export.export_hf(str(qwen3_dir), str(tmp_path / "out"))
    assert m["architecture"]["vocab_size"] == 256 and "latent" not in m


def test_a_failure_mid_export_leaves_out_untouched(qwen3_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    hf_export.export_hf(str(qwen3_dir), str(out))
    before = sorted(os.listdir(out))
    manifest = (out / "manifest.json").read_text()

    def boom(*a, **k):
        raise HFError("backbone.onnx", "simulated failure")
    monkeypatch.setattr(hf_export, "export_graphs", boom)
    _export_fails(qwen3_dir, out, "simulated failure", overwrite=True)
    assert sorted(os.listdir(out)) == before and (out / "manifest.json").read_text() == manifest
    monkeypatch.undo()
    _export_fails(qwen3_dir, out, "already exists")


def test_extras_config_errors_are_named(tmp_path):
    d = tmp_path / "hf"
    write_tiny(str(d), "qwen3", extras=True)
    _edit_json(d / "nfcot_config.json", bot_token="<nope>")
    _export_fails(d, tmp_path / "out", "nfcot_config.json: bot_token '<nope>' is not a token")
    _edit_json(d / "nfcot_config.json", bot_token="<bot>", thought_dim=7)
    _export_fails(d, tmp_path / "out", "nfcot.safetensors: tensor thought_proj.0.weight has shape")
    os.remove(d / "nfcot.safetensors")
    _export_fails(d, tmp_path / "out", "nfcot.safetensors: missing")


def test_cli_exits_non_zero_with_the_reason(qwen3_dir, tmp_path):
    _edit_json(qwen3_dir / "config.json", architectures=["GPT2LMHeadModel"])
    r = subprocess.run([sys.executable, "-m", "nfcot.export", "--hf", str(qwen3_dir), "--out", str(tmp_path / "out")],
                       cwd=MODELS, capture_output=True, text=True)
    assert r.returncode == 2
    assert "error: config.json: architectures ['GPT2LMHeadModel'] not supported" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_trainer_checkpoint_converts_through_hf_write(tmp_path):
    from nfcot.hf_write import convert_checkpoint
    model, flow, vae = fresh_model(6)
    torch.save({"config": model.config.to_dict(), "model": model.state_dict(), "flow": flow.state_dict(),
                "vae": vae.state_dict(), "m": 20}, tmp_path / "ckpt.pt")
    convert_checkpoint(str(tmp_path / "ckpt.pt"), str(tmp_path / "hf"))
    hm = load_hf(str(tmp_path / "hf"))
    assert hm.hf_architecture == "LlamaForCausalLM" and hm.model.config.family == "nfcot-trace"
    assert hm.extras["flow"] == {"blocks": 2, "width": 64} and hm.extras["thought_decoder"]["vocab_size"] == 246
    for k, v in model.state_dict().items():
        assert torch.equal(hm.model.state_dict()[k], v), k
    for k, v in vae.state_dict().items():
        assert torch.equal(hm.vae.state_dict()[k], v), k


def test_weights_in_one_file_per_tensor_are_gathered_into_one_data_file(tmp_path):
    # torch writes a graph past 2 GB as one file per tensor; gather_external_data makes it one file.
    import onnx
    from onnx import numpy_helper
    from nfcot.export import gather_external_data
    write_tiny(str(tmp_path / "hf"), "qwen3")
    hf_export.export_hf(str(tmp_path / "hf"), str(tmp_path / "out"))
    want = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "out" / "backbone.onnx")).graph.initializer}
    raw = tmp_path / "raw"
    raw.mkdir()
    src = onnx.load(str(tmp_path / "out" / "backbone.onnx"))
    want_constants = constant_values(src.graph)
    # As torch writes it: Constant nodes' values (the RoPE tables) in files of their own too.
    onnx.save_model(src, str(raw / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=256, convert_attribute=True)
    assert len(os.listdir(raw)) > 10
    from onnx.external_data_helper import uses_external_data
    raw_graph = onnx.load(str(raw / "m.onnx"), load_external_data=False).graph
    assert any(uses_external_data(a.t) for n in raw_graph.node if n.op_type == "Constant" for a in n.attribute)
    (tmp_path / "dst").mkdir()
    gather_external_data(str(raw / "m.onnx"), str(tmp_path / "dst" / "m.onnx"), "m.onnx.data")
    shutil.rmtree(raw)  # as the exporter does: nothing may still point into it
    assert sorted(os.listdir(tmp_path / "dst")) == ["m.onnx", "m.onnx.data"]
    onnx.checker.check_model(str(tmp_path / "dst" / "m.onnx"))
    out = onnx.load(str(tmp_path / "dst" / "m.onnx"))
    got = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert got.keys() == want.keys()
    for k in want:
        assert (got[k] == want[k]).all(), k
    got_constants = constant_values(out.graph)
    assert got_constants.keys() == want_constants.keys() and any(v.nbytes >= 256 for v in want_constants.values())
    for k in want_constants:
        assert (got_constants[k] == want_constants[k]).all(), k


def constant_values(graph) -> dict:
    from onnx import numpy_helper
    return {n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == "Constant"
            for a in n.attribute if a.name == "value"}
