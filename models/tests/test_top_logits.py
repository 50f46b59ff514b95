"""top_logits.add_top_outputs: every backbone export ends in one TopK over the logits (outputs
top_logits / top_ids, in the manifest too); weights kept in backbone.onnx.data are not rewritten.
Values through onnxruntime-node: test/model-parity.test.ts; the engine's use: test/engine-unit.test.ts."""
import hashlib
import json

import torch
from onnx import load, numpy_helper

from nfcot.export import PRESETS, _export_backbone, main
from nfcot.model import ModelConfig, NFCoTModel
from nfcot.top_logits import TOP_K, add_top_outputs, top_outputs


def _tops(graph):
    """The TopK nodes: each in the then-branch of an If on the row count (none outside it)."""
    assert not [n for n in graph.node if n.op_type == "TopK"]
    ifs = [n for n in graph.node if n.op_type == "If" and n.name == "top_logits/If"]
    return [m for n in ifs for a in n.attribute if a.name == "then_branch" for m in a.g.node if m.op_type == "TopK"]


def test_every_export_ends_in_one_topk_over_the_logits(tmp_path):
    for attention in ("fused", "plain"):
        out = tmp_path / attention
        main(["--preset", "tiny", "--out", str(out), "--attention", attention])
        g = load(str(out / "backbone.onnx")).graph
        (top,) = _tops(g)
        assert list(top.input)[0] == "logits"
        (k,) = [n for n in g.node if n.output[0] == top.input[1]]
        assert numpy_helper.to_array(k.attribute[0].t).tolist() == [TOP_K]
        (cond,) = [n for n in g.node if n.name == "top_logits/If"]
        assert list(cond.output) == ["top_logits", "top_ids"]
        manifest = json.load(open(out / "manifest.json"))
        spec, vocab = manifest["graphs"]["backbone"], manifest["architecture"]["vocab_size"]
        assert [o.name for o in g.output] == [o["name"] for o in spec["outputs"]]
        assert spec["outputs"][-2:] == top_outputs(vocab) == [
            {"name": "top_logits", "dtype": "float32", "shape": ["num_outputs", TOP_K]},
            {"name": "top_ids", "dtype": "int64", "shape": ["num_outputs", TOP_K]}]
        # No initializer of its own: nfcot.onnx_weights reads named initializers as weights.
        assert not [i.name for i in g.initializer if i.name.startswith("top_")]
    assert top_outputs(10)[1]["shape"] == ["num_outputs", 10]  # never more than the vocabulary


def test_external_weights_are_left_in_place_and_a_second_call_adds_nothing(tmp_path):
    torch.manual_seed(0)
    model = NFCoTModel(ModelConfig(**PRESETS["tiny"])).eval()
    spec = _export_backbone(str(tmp_path), model, external=True)
    data = tmp_path / spec["external_data"]
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    add_top_outputs(str(tmp_path / "backbone.onnx"), model.config.vocab_size)
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest
    g = load(str(tmp_path / "backbone.onnx")).graph  # loads the weights from the .data file
    assert len(_tops(g)) == 1
    assert [o.name for o in g.output][-2:] == ["top_logits", "top_ids"]
