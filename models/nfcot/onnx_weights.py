"""Recover the PyTorch modules from an exported model directory's ONNX initializers.

The training checkpoints are not committed (runs/ is ignored), so the shipped model exists only as
ONNX graphs. This reads its weights back into NFCoTModel, ShallowFlow and the StepVAE's thought
decoder, so the PyTorch reference can be compared against the shipped graphs.

Initializers the exporter kept under their module names (`m.model.norm.weight`) map directly.
Others were constant-folded into anonymous ones (`onnx::MatMul_2243`, a Linear weight transposed
for MatMul). Those are matched by where they are used: a probe export of the same architecture,
with every parameter set to distinct random values, tells which parameter (as is, or transposed)
feeds each (node name, input slot); node names follow the module path (`/mlp/down_proj_7/MatMul`),
so they survive exporter changes elsewhere in the graph (a leaner rotary, a tied LM head), which
graph order does not. Sites the probe has no parameter at are constants, not weights, and skipped;
a parameter the graphs do not hold is an error in load_model_dir.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from .export import export_dir
from .fused_graph import plain_graph
from .flow import ShallowFlow
from .model import ModelConfig, NFCoTModel
from .vae import StepVAE

# The wrapper attribute each exported module sits under (paged.py: PagedBackbone.m, FlowForward.flow,
# ThoughtDecoder.flow / .vae).
PREFIXES = {"backbone": {"m.": "model"}, "flow_forward": {"flow.": "flow"}, "flow_inverse": {"flow.": "flow"},
            "thought_decoder": {"flow.": "flow", "vae.": "vae"}}


def _named(name: str) -> bool:
    return not name.startswith("onnx::")


def _uses(graph) -> list[tuple[tuple[str, int], str, np.ndarray]]:
    """(site, initializer, value) for each use: site = (consuming node's name, input slot)."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    # The exporter stores parameters of equal value once (a fresh model's RMSNorm weights are all
    # ones) and names the others by Identity nodes of that initializer: aliases, not uses.
    alias = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in values]
    for n in alias:
        values[n.output[0]] = values[n.input[0]]
    return [((n.name, i), x, values[x]) for n in graph.node if n not in alias for i, x in enumerate(n.input) if x in values]


def _which_param(value: np.ndarray, params: dict[str, np.ndarray]) -> tuple[str, bool] | None:
    for name, p in params.items():
        if p.shape == value.shape and np.array_equal(p, value):
            return name, False
        if p.ndim == 2 and p.T.shape == value.shape and np.array_equal(p.T, value):
            return name, True
    return None


def _read_graph(path: str, probe_path: str, modules: dict[str, torch.nn.Module], prefixes: dict[str, str]) -> dict:
    """{(module key, parameter name): tensor} for every parameter the graph holds."""
    # A fused export's weights are read from its plain branch (same names as a plain export).
    graph, probe = plain_graph(onnx.load(path).graph), plain_graph(onnx.load(probe_path).graph)
    out: dict[tuple[str, str], torch.Tensor] = {}

    def owner(full: str) -> tuple[str, str]:
        for pre, key in prefixes.items():
            if full.startswith(pre):
                return key, full[len(pre):]
        raise ValueError(f"{path}: initializer {full} belongs to no exported module")

    probe_params = {f"{pre}{n}": p.detach().numpy() for pre, key in prefixes.items()
                    for n, p in modules[key].named_parameters()}
    probe_sites = {site: (pname, pvalue) for site, pname, pvalue in _uses(probe)}
    for site, name, value in _uses(graph):
        if _named(name):
            hit: tuple[str, bool] | None = (name, False)  # the parameter's own name
        elif site in probe_sites:
            pname_full, pvalue = probe_sites[site]
            hit = (pname_full, False) if _named(pname_full) else _which_param(pvalue, probe_params)
            if hit is not None and value.shape != pvalue.shape:
                raise ValueError(f"{path}: {name} at {site[0]} has shape {list(value.shape)}, the exporter writes {list(pvalue.shape)}")
        else:
            hit = None
        if hit is None:
            continue  # a constant (rotary tables, shapes), not a weight
        full, transposed = hit
        key, pname = owner(full)
        t = torch.from_numpy((value.T if transposed else value).copy())
        if (key, pname) in out and not torch.equal(out[(key, pname)], t):
            raise ValueError(f"{path}: two uses of {full} hold different values")
        out[(key, pname)] = t
    return out


def load_model_dir(model_dir: str):
    """(model, flow, vae, manifest) with every weight the model directory holds. The VAE's CoT
    encoder is training-only and not exported: only `vae.dec` is loaded (the rest stays as
    initialised). Raises if any backbone or flow parameter is missing or the graphs disagree."""
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    arch = {k: v for k, v in manifest["architecture"].items() if k != "head_dim"}
    cfg = ModelConfig.from_dict(arch)
    graphs = manifest["graphs"]
    blocks = len({i.name.split(".")[2] for i in onnx.load(os.path.join(model_dir, graphs["flow_forward"]["file"])).graph.initializer
                  if i.name.startswith("flow.blocks.")}) if "flow_forward" in graphs else 0
    # The probe: same architecture, every parameter distinct, exported by this exporter.
    g = torch.Generator().manual_seed(0)
    probe = {"model": NFCoTModel(cfg), "flow": ShallowFlow(cfg.thought_dim, cfg.num_thoughts, blocks=max(blocks, 2)),
             "vae": StepVAE(cfg.vocab_size, cfg.thought_dim)}
    with torch.no_grad():
        for mod in probe.values():
            for p in mod.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    loaded: dict[tuple[str, str], torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_dir(tmp, probe["model"], probe["flow"] if blocks else None,
                   probe["vae"] if "thought_decoder" in graphs else None, "probe")
        for gname, spec in graphs.items():
            part = _read_graph(os.path.join(model_dir, spec["file"]), os.path.join(tmp, spec["file"]), probe,
                               PREFIXES[gname])
            for k, t in part.items():
                if k in loaded and not torch.equal(loaded[k], t):
                    raise ValueError(f"{spec['file']}: {k[0]}.{k[1]} differs from another graph's copy")
                loaded[k] = t
    model = NFCoTModel(cfg)
    flow = ShallowFlow(cfg.thought_dim, cfg.num_thoughts, blocks=max(blocks, 2))
    vae = StepVAE(cfg.vocab_size, cfg.thought_dim)
    for key, mod, required in (("model", model, True), ("flow", flow, blocks > 0), ("vae", vae, False)):
        state = {n: t for (k, n), t in loaded.items() if k == key}
        missing = [n for n, _ in mod.named_parameters() if n not in state]
        if required and missing:
            raise ValueError(f"{model_dir}: {key} parameters not in the graphs: {', '.join(missing)}")
        result = mod.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{model_dir}: graphs hold {key} tensors it does not have: {result.unexpected_keys}")
        mod.eval()
    return model, flow, vae, manifest
