import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from nfcot.export import export_dir
from nfcot.onnx_weights import load_model_dir
from nfcot.parity import fresh_model

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nfcot-trace-small")


def _equal_state(a: torch.nn.Module, b: torch.nn.Module, only: str = "") -> int:
    n = 0
    sb = dict(b.named_parameters())
    for name, p in a.named_parameters():
        if name.startswith(only):
            assert torch.equal(p, sb[name]), name
            n += 1
    return n


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh random model (random heads and flow too) and its export: one export for the module."""
    model, flow, vae = fresh_model(3)
    d = tmp_path_factory.mktemp("fresh")
    export_dir(str(d), model, flow, vae, "roundtrip")
    return model, flow, vae, d


def _copy(src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def test_a_fresh_export_reads_back_exactly(fresh):
    model, flow, vae, d = fresh
    m2, f2, v2, manifest = load_model_dir(str(d))
    assert manifest["name"] == "roundtrip"
    assert _equal_state(model, m2) == len(list(model.parameters()))
    assert _equal_state(flow, f2) == len(list(flow.parameters()))
    assert _equal_state(vae, v2, "dec.") == 6  # the decoder's 3 Linear layers; the encoder is not exported


def test_a_graph_with_a_changed_weight_is_read_as_changed(fresh, tmp_path):
    """The mapping is by position, not by luck: perturb one anonymous initializer (k_proj of layer 1,
    transposed for MatMul) and exactly that parameter changes."""
    model, flow, vae, d = fresh
    _copy(d, tmp_path)
    path = tmp_path / "backbone.onnx"
    g = onnx.load(str(path))
    want = model.model.layers[1].self_attn.k_proj.weight.detach().numpy().T
    hit = [i for i in g.graph.initializer if np.array_equal(numpy_helper.to_array(i), want)]
    assert len(hit) == 1 and hit[0].name.startswith("onnx::")
    arr = numpy_helper.to_array(hit[0]).copy()
    arr[0, 0] += 1.0
    hit[0].CopyFrom(numpy_helper.from_array(arr, hit[0].name))
    onnx.save(g, str(path))
    m2, _, _, _ = load_model_dir(str(tmp_path))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, dict(m2.named_parameters())[n])]
    assert changed == ["model.layers.1.self_attn.k_proj.weight"]
    assert m2.model.layers[1].self_attn.k_proj.weight[0, 0] == model.model.layers[1].self_attn.k_proj.weight[0, 0] + 1.0


def test_graphs_that_disagree_on_the_flow_are_refused(fresh, tmp_path):
    _copy(fresh[3], tmp_path)
    path = tmp_path / "flow_inverse.onnx"
    g = onnx.load(str(path))
    init = next(i for i in g.graph.initializer if i.name == "flow.blocks.0.pos")
    arr = numpy_helper.to_array(init).copy() + 1.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(g, str(path))
    with pytest.raises(ValueError, match=r"flow\.blocks\.\d\.pos differs"):
        load_model_dir(str(tmp_path))


def test_the_shipped_model_reads_back_and_reexports_to_the_same_initializers(tmp_path):
    model, flow, vae, manifest = load_model_dir(SHIPPED)
    assert sum(p.numel() for p in model.parameters()) == 1_562_528  # models/README.md: 1.56M backbone parameters
    export_dir(str(tmp_path), model, flow, vae, manifest["name"])
    for spec in manifest["graphs"].values():
        a = onnx.load(os.path.join(SHIPPED, spec["file"])).graph
        b = onnx.load(str(tmp_path / spec["file"])).graph
        named = lambda g: {i.name: numpy_helper.to_array(i) for i in g.initializer if not i.name.startswith("onnx::")}
        anon = lambda g: sorted(numpy_helper.to_array(i).tobytes() for i in g.initializer if i.name.startswith("onnx::"))
        na, nb = named(a), named(b)
        assert sorted(na) == sorted(nb), spec["file"]
        for k in na:
            assert np.array_equal(na[k], nb[k]), f"{spec['file']}: {k}"
        assert anon(a) == anon(b), spec["file"]
        assert len(a.initializer) == len(b.initializer)
