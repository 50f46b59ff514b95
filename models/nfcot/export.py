"""Export a model directory (manifest, tokenizer, chat template, ONNX graphs) per models/README.md.

  /usr/bin/python3 -m nfcot.export --checkpoint runs/small/ckpt.pt --out nfcot-trace-small
  /usr/bin/python3 -m nfcot.export --preset bench --out presets/bench     (random weights, ~75M)
"""
from __future__ import annotations

import argparse
import json
import os
import warnings

import torch

from . import tokenizer as tk
from .flow import ShallowFlow
from .model import ModelConfig, NFCoTModel
from .paged import FlowForward, FlowInverse, PagedBackbone, ThoughtDecoder
from .vae import StepVAE

OPSET = 17
FORMAT_VERSION = 1
PRESETS = {
    # ~75M parameters, random weights: for throughput benchmarks only.
    "bench": dict(hidden_size=768, num_layers=12, num_heads=12, num_kv_heads=4, intermediate_size=2048),
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128),
}

BACKBONE_IO = {
    "inputs": [
        {"name": "input_ids", "dtype": "int64", "shape": ["batch", "seq"]},
        {"name": "thought_inputs", "dtype": "float32", "shape": ["batch", "seq", "thought_dim"]},
        {"name": "is_thought", "dtype": "float32", "shape": ["batch", "seq"]},
        {"name": "positions", "dtype": "int64", "shape": ["batch", "seq"]},
        {"name": "past_lens", "dtype": "int64", "shape": ["batch"]},
        {"name": "kv_pool", "dtype": "float32",
         "shape": ["num_blocks", "num_layers", 2, "num_kv_heads", "block_size", "head_dim"]},
        {"name": "block_tables", "dtype": "int64", "shape": ["batch", "max_blocks"]},
        {"name": "gather_index", "dtype": "int64", "shape": ["num_outputs"]},
    ],
    "outputs": [
        {"name": "logits", "dtype": "float32", "shape": ["num_outputs", "vocab_size"]},
        {"name": "mu", "dtype": "float32", "shape": ["num_outputs", "thought_dim"]},
        {"name": "log_sigma", "dtype": "float32", "shape": ["num_outputs", "thought_dim"]},
        {"name": "new_kv", "dtype": "float32",
         "shape": ["num_layers", 2, "batch", "num_kv_heads", "seq", "head_dim"]},
    ],
}
FLOW_FORWARD_IO = {
    "inputs": [{"name": "e", "dtype": "float32", "shape": ["batch", "num_thoughts", "thought_dim"]}],
    "outputs": [{"name": "u", "dtype": "float32", "shape": ["batch", "num_thoughts", "thought_dim"]},
                {"name": "log_det", "dtype": "float32", "shape": ["batch"]}],
}
FLOW_INVERSE_IO = {
    "inputs": [{"name": "u", "dtype": "float32", "shape": ["batch", "num_thoughts", "thought_dim"]}],
    "outputs": [{"name": "e", "dtype": "float32", "shape": ["batch", "num_thoughts", "thought_dim"]}],
}
DECODER_IO = {
    "inputs": [{"name": "thoughts", "dtype": "float32", "shape": ["batch", "num_thoughts", "thought_dim"]}],
    "outputs": [{"name": "step_logits", "dtype": "float32", "shape": ["batch", "num_thoughts", 2, "vocab_size"]}],
}


def _export(module, args, path, io, dynamic):
    names_in = [x["name"] for x in io["inputs"]]
    names_out = [x["name"] for x in io["outputs"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, opset_version=OPSET, input_names=names_in,
                          output_names=names_out, dynamic_axes=dynamic, do_constant_folding=True)


def example_backbone_inputs(c: ModelConfig, B=2, S=3, NB=4, MB=2, BS=4):
    return (torch.zeros(B, S, dtype=torch.long), torch.zeros(B, S, c.thought_dim), torch.zeros(B, S),
            torch.arange(S).repeat(B, 1), torch.zeros(B, dtype=torch.long),
            torch.zeros(NB, c.num_layers, 2, c.num_kv_heads, BS, c.head_dim),
            torch.zeros(B, MB, dtype=torch.long), torch.arange(B * S))


def export_backbone(out: str, model: NFCoTModel) -> None:
    """backbone.onnx alone (what RL changes; export_weights reuses the other graphs)."""
    _export(PagedBackbone(model), example_backbone_inputs(model.config), os.path.join(out, "backbone.onnx"), BACKBONE_IO,
            {"input_ids": {0: "batch", 1: "seq"}, "thought_inputs": {0: "batch", 1: "seq"},
             "is_thought": {0: "batch", 1: "seq"}, "positions": {0: "batch", 1: "seq"},
             "past_lens": {0: "batch"}, "kv_pool": {0: "num_blocks", 4: "block_size"},
             "block_tables": {0: "batch", 1: "max_blocks"}, "gather_index": {0: "num_outputs"},
             "logits": {0: "num_outputs"}, "mu": {0: "num_outputs"}, "log_sigma": {0: "num_outputs"},
             "new_kv": {2: "batch", 4: "seq"}})


def export_weights(base_dir: str, model: NFCoTModel, out: str, extra: dict | None = None) -> None:
    """A model directory that is `base_dir` with a new backbone: the flow, thought decoder,
    tokenizer and template are copied unchanged (RL trains the backbone and its heads only).
    Written to a temporary directory and renamed, so a reader never sees half of one."""
    import shutil
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base_dir, tmp)
    model.eval()
    export_backbone(tmp, model)
    if extra:
        path = os.path.join(tmp, "manifest.json")
        manifest = {**json.load(open(path)), **extra}
        with open(path, "w") as f:
            json.dump(manifest, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def export_dir(out: str, model: NFCoTModel, flow: ShallowFlow | None, vae: StepVAE | None,
               name: str, extra: dict | None = None, default_temperature: float = 0.9) -> dict:
    c = model.config
    c.validate()
    os.makedirs(out, exist_ok=True)
    model.eval()
    graphs = {}
    export_backbone(out, model)
    graphs["backbone"] = {"file": "backbone.onnx", **BACKBONE_IO}
    ex = torch.zeros(2, c.num_thoughts, c.thought_dim)
    if flow is not None:
        flow.eval()
        _export(FlowForward(flow), (ex,), os.path.join(out, "flow_forward.onnx"), FLOW_FORWARD_IO,
                {"e": {0: "batch"}, "u": {0: "batch"}, "log_det": {0: "batch"}})
        _export(FlowInverse(flow), (ex,), os.path.join(out, "flow_inverse.onnx"), FLOW_INVERSE_IO,
                {"u": {0: "batch"}, "e": {0: "batch"}})
        graphs["flow_forward"] = {"file": "flow_forward.onnx", **FLOW_FORWARD_IO}
        graphs["flow_inverse"] = {"file": "flow_inverse.onnx", **FLOW_INVERSE_IO}
        if vae is not None:
            vae.eval()
            _export(ThoughtDecoder(flow, vae), (ex,), os.path.join(out, "thought_decoder.onnx"), DECODER_IO,
                    {"thoughts": {0: "batch"}, "step_logits": {0: "batch"}})
            graphs["thought_decoder"] = {"file": "thought_decoder.onnx", **DECODER_IO,
                                         "step_format": "{0} = {1}", "stop_token_id": tk.EOT}
    tk.write(out)
    manifest = {
        "format": "nfcot-onnx",
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": {**c.to_dict(), "head_dim": c.head_dim},
        "max_context": c.max_position,
        "latent": {"num_thoughts": c.num_thoughts, "thought_dim": c.thought_dim,
                   "default_temperature": default_temperature, "span": "fixed"},
        "special_tokens": {"pad": tk.PAD, "unk": tk.UNK, "bos": tk.BOS, "eos": tk.EOS, "bot": tk.BOT,
                           "eot": tk.EOT},
        "reasoning_modes": ["none", "explicit", "latent"],
        "default_reasoning_mode": "latent",
        "kv_cache": {"dtype": "float32",
                     "layout": ["num_blocks", "num_layers", 2, "num_kv_heads", "block_size", "head_dim"]},
        "tokenizer": "tokenizer.json",
        "tokenizer_config": "tokenizer_config.json",
        "chat_template": "chat_template.jinja",
        "graphs": graphs,
        **(extra or {}),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def load_checkpoint(path: str):
    ck = torch.load(path, map_location="cpu")
    cfg = ModelConfig.from_dict(ck["config"])
    model = NFCoTModel(cfg)
    model.load_state_dict(ck["model"])
    flow = ShallowFlow(cfg.thought_dim, cfg.num_thoughts, blocks=2)
    flow.load_state_dict(ck["flow"])
    vae = StepVAE(cfg.vocab_size, cfg.thought_dim)
    vae.load_state_dict(ck["vae"])
    for mod in (model, flow, vae):
        mod.eval()
    return model, flow, vae, ck


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", help="JSON file merged into the manifest (evaluation results, task)")
    args = ap.parse_args(argv)
    extra = json.load(open(args.extra)) if args.extra else {}
    if args.checkpoint:
        model, flow, vae, ck = load_checkpoint(args.checkpoint)
        extra = {"task": {"name": "program-tracing", "M": ck["m"]}, **extra}
        name = args.name or os.path.basename(os.path.normpath(args.out))
    else:
        torch.manual_seed(args.seed)
        cfg = ModelConfig(vocab_size=len(tk.VOCAB), **PRESETS[args.preset])
        model, flow, vae = NFCoTModel(cfg), None, None
        # Random NF head weights, so thoughts are not all zero.
        torch.nn.init.normal_(model.nf_head.weight, 0.0, 0.02)
        name = args.name or f"random-{args.preset}"
        extra = {"random_weights": True, **extra}
    m = export_dir(args.out, model, flow, vae, name, extra)
    n = sum(p.numel() for p in model.parameters())
    print(f"exported {m['name']} ({n:,} backbone parameters) to {args.out}: {', '.join(m['graphs'])}")


if __name__ == "__main__":
    main()
