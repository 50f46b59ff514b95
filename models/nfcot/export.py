"""Export a model directory (manifest, tokenizer, chat template, ONNX graphs) per models/README.md.

  /usr/bin/python3 -m nfcot.export --checkpoint runs/small/ckpt.pt --out nfcot-trace-small
  /usr/bin/python3 -m nfcot.export --preset bench --out presets/bench     (random weights, ~75M)
  /usr/bin/python3 -m nfcot.export --hf HF_DIR --out OUT                  (Llama / Qwen2 / Qwen3, nfcot/hf.py)
  ... --weights fp16|int8|int4 [--keep GROUPS] [--block 128] [--kv-dtype float16]   (nfcot/quantize.py)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch

from . import tokenizer as tk
from .flow import ShallowFlow
from .model import ModelConfig, NFCoTModel
from .report import directory_written_whole, write_json
from .paged import FlowForward, FlowInverse, PagedBackbone, PagedTextBackbone, ThoughtDecoder
from .quantize import BLOCK, BLOCKS, KV_DTYPES, WEIGHTS
from .tied_head import add_single_row_head
from .top_logits import add_top_outputs, top_outputs
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


def _export(module, args, path, io, dynamic, custom_opsets=None):
    names_in = [x["name"] for x in io["inputs"]]
    names_out = [x["name"] for x in io["outputs"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, opset_version=OPSET, input_names=names_in,
                          output_names=names_out, dynamic_axes=dynamic, do_constant_folding=True,
                          custom_opsets=custom_opsets)


def example_backbone_inputs(c: ModelConfig, B=2, S=3, NB=4, MB=2, BS=4):
    return (torch.zeros(B, S, dtype=torch.long), torch.zeros(B, S, c.thought_dim), torch.zeros(B, S),
            torch.arange(S).repeat(B, 1), torch.zeros(B, dtype=torch.long),
            torch.zeros(NB, c.num_layers, 2, c.num_kv_heads, BS, c.head_dim),
            torch.zeros(B, MB, dtype=torch.long), torch.arange(B * S))


TEXT_BACKBONE_IO = {
    "inputs": [x for x in BACKBONE_IO["inputs"] if x["name"] not in ("thought_inputs", "is_thought")],
    "outputs": [x for x in BACKBONE_IO["outputs"] if x["name"] not in ("mu", "log_sigma")],
}
BACKBONE_AXES = {"input_ids": {0: "batch", 1: "seq"}, "thought_inputs": {0: "batch", 1: "seq"},
                 "is_thought": {0: "batch", 1: "seq"}, "positions": {0: "batch", 1: "seq"},
                 "past_lens": {0: "batch"}, "kv_pool": {0: "num_blocks", 4: "block_size"},
                 "block_tables": {0: "batch", 1: "max_blocks"}, "gather_index": {0: "num_outputs"},
                 "logits": {0: "num_outputs"}, "mu": {0: "num_outputs"}, "log_sigma": {0: "num_outputs"},
                 "new_kv": {2: "batch", 4: "seq"}}
# protobuf's limit: a graph whose weights pass it keeps them in backbone.onnx.data beside it.
EXTERNAL_DATA_BYTES = 2 * 1000**3
EXTERNAL_DATA = "backbone.onnx.data"
# plain: attention in block layout from ONNX ops (paged.py). fused: decode steps (one new position
# per row) through onnxruntime's fused CPU ops (fused.py).
ATTENTION = ("fused", "plain")


def _export_backbone(out: str, model: NFCoTModel, external: bool | None = None, attention: str = "plain",
                     fused_max_batch: int | None = None) -> dict:
    """backbone.onnx (with backbone.onnx.data when the weights pass 2 GB or external=True).
    attention "fused": decode steps through onnxruntime's fused attention (nfcot/fused.py)."""
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    c = model.config
    io = BACKBONE_IO if c.latent else TEXT_BACKBONE_IO
    names = {x["name"] for x in io["inputs"] + io["outputs"]}
    axes = {k: v for k, v in BACKBONE_AXES.items() if k in names}
    args = example_backbone_inputs(c)
    module = PagedBackbone(model) if c.latent else PagedTextBackbone(model)
    if not c.latent:
        args = (args[0],) + args[3:]
    if external is None:  # a fused graph holds every weight twice (fused_graph.with_decode_branch)
        copies = 2 if attention == "fused" else 1
        external = copies * sum(p.numel() * 4 for p in model.parameters()) > EXTERNAL_DATA_BYTES
    path = os.path.join(out, "backbone.onnx")
    spec = _write_backbone(module, model, args, path, io, axes, external, attention, fused_max_batch)
    add_top_outputs(path, c.vocab_size)
    add_single_row_head(path)
    return {**spec, "outputs": io["outputs"] + top_outputs(c.vocab_size)}


def _write_backbone(module, model: NFCoTModel, args, path: str, io: dict, axes: dict, external: bool,
                    attention: str, fused_max_batch: int | None) -> dict:
    out = os.path.dirname(path)
    if attention == "fused":
        from .fused import FUSED_MAX_BATCH
        limit = FUSED_MAX_BATCH if fused_max_batch is None else fused_max_batch
        _export_fused(model, module, args, path, io, axes, limit, external)
        return {"file": "backbone.onnx", **({"external_data": EXTERNAL_DATA} if external else {}),
                "attention": "fused", "fused_max_batch": limit, **io}
    if not external:
        _export(module, args, path, io, axes)
        return {"file": "backbone.onnx", **io}
    # torch writes a graph past 2 GB as one file per tensor: export into a scratch folder, then
    # gather every weight into one backbone.onnx.data (onnxruntime resolves it beside the model).
    import shutil
    raw = os.path.join(out, ".raw")
    os.makedirs(raw, exist_ok=True)
    _export(module, args, os.path.join(raw, "backbone.onnx"), io, axes)
    gather_external_data(os.path.join(raw, "backbone.onnx"), path, EXTERNAL_DATA)
    shutil.rmtree(raw)
    return {"file": "backbone.onnx", "external_data": EXTERNAL_DATA, **io}


def _export_fused(model: NFCoTModel, plain_module, args, path: str, io: dict, axes: dict, max_batch: int,
                  external: bool = False) -> None:
    """The plain graph and the fused decode graph (traced at S = 1), joined by one If; with
    external, every weight of both branches in one backbone.onnx.data beside path."""
    import tempfile

    import onnx

    from .fused import FusedDecodeBackbone, FusedDecodeTextBackbone
    from .fused_graph import merge_sibling_matmuls, with_decode_branch
    c = model.config
    fused = FusedDecodeBackbone(model) if c.latent else FusedDecodeTextBackbone(model)
    one = example_backbone_inputs(c, B=2, S=1)
    one = one[:-1] + (torch.arange(2),)
    if not c.latent:
        one = (one[0],) + one[3:]
    with tempfile.TemporaryDirectory() as tmp:
        # Each in a folder of its own: past 2 GB torch writes one file per tensor beside the graph.
        for d in ("plain", "fused"):
            os.makedirs(os.path.join(tmp, d))
        _export(plain_module, args, os.path.join(tmp, "plain", "g.onnx"), io, axes)
        _export(fused, one, os.path.join(tmp, "fused", "g.onnx"), io, axes, custom_opsets={"com.microsoft": 1})
        decode = onnx.load(os.path.join(tmp, "fused", "g.onnx"))
        merge_sibling_matmuls(decode)
        merged = with_decode_branch(onnx.load(os.path.join(tmp, "plain", "g.onnx")), decode, max_batch)
        del decode
    if external:
        onnx.save_model(merged, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA, size_threshold=1024)
    else:
        onnx.save_model(merged, path)


def gather_external_data(src: str, dst: str, location: str, threshold: int = 1024) -> None:
    """Rewrite the ONNX model src (inline weights, or torch's one file per tensor beside it) as dst
    with every tensor of threshold bytes or more in one file `location` beside dst: initializers,
    and Constant nodes' values (torch writes large constants, such as RoPE tables, to files of their
    own too), in subgraphs as well. Tensors are copied one at a time (onnx.load + save_model would
    hold every weight in memory at once)."""
    import onnx
    from onnx.external_data_helper import uses_external_data
    proto = onnx.load(src, load_external_data=False)
    base = os.path.dirname(src)
    with open(os.path.join(os.path.dirname(dst), location), "wb") as f:
        for t in _graph_tensors(proto.graph):
            if uses_external_data(t):
                info = {e.key: e.value for e in t.external_data}
                with open(os.path.join(base, info["location"]), "rb") as g:
                    g.seek(int(info.get("offset", 0)))
                    buf = g.read(int(info["length"])) if "length" in info else g.read()
            elif len(t.raw_data) >= threshold:
                buf = t.raw_data
            else:
                continue
            offset = f.tell()
            f.write(buf)
            del buf
            t.ClearField("raw_data")
            del t.external_data[:]
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(f.tell() - offset))):
                e = t.external_data.add()
                e.key, e.value = k, v
    onnx.save_model(proto, dst)


def _graph_tensors(graph):
    """Every TensorProto a graph holds: initializers and tensor attributes, subgraphs included."""
    from onnx import AttributeProto
    yield from graph.initializer
    for node in graph.node:
        for a in node.attribute:
            if a.type == AttributeProto.TENSOR:
                yield a.t
            elif a.type == AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == AttributeProto.GRAPH:
                yield from _graph_tensors(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _graph_tensors(g)


def export_backbone(out: str, model: NFCoTModel, attention: str = "plain", fused_max_batch: int | None = None) -> dict:
    """backbone.onnx alone (what RL changes; export_weights reuses the other graphs)."""
    return _export_backbone(out, model, attention=attention, fused_max_batch=fused_max_batch)


def export_weights(base_dir: str, model: NFCoTModel, out: str, extra: dict | None = None,
                   attention: str | None = None) -> None:
    """A model directory that is `base_dir` with a new backbone: the flow, thought decoder,
    tokenizer and template are copied unchanged (RL trains the backbone and its heads only).
    attention: the backbone's attention path (None: the one base_dir's backbone has).
    Written to a temporary directory and renamed, so a reader never sees half of one."""
    import shutil
    with directory_written_whole(out) as tmp:
        shutil.copytree(base_dir, tmp)
        model.eval()
        path = os.path.join(tmp, "manifest.json")
        manifest = json.load(open(path))
        base = manifest["graphs"]["backbone"]
        spec = export_backbone(tmp, model, attention or base.get("attention", "plain"), base.get("fused_max_batch"))
        for k in ("attention", "fused_max_batch"):
            base.pop(k, None)
            if k in spec:
                base[k] = spec[k]
        had = {o["name"] for o in base["outputs"]}  # a base exported before the top-k outputs
        base["outputs"] += [o for o in spec["outputs"] if o["name"] not in had]
        write_json(path, {**manifest, **(extra or {})})


def export_graphs(out: str, model: NFCoTModel, flow: ShallowFlow | None, vae: StepVAE | None,
                  stop_token_id: int = tk.EOT, step_format: str = "{0} = {1}", external: bool | None = None,
                  attention: str = "plain") -> dict:
    """Every graph of the contract the model has: the backbone (text-only variant without the NF
    head), and with a flow the flow graphs, with a VAE too the thought decoder."""
    c = model.config
    c.validate()
    os.makedirs(out, exist_ok=True)
    model.eval()
    graphs = {"backbone": _export_backbone(out, model, external, attention)}
    ex = torch.zeros(2, c.num_thoughts, c.thought_dim)
    if flow is not None and c.latent:
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
                                         "step_format": step_format, "stop_token_id": stop_token_id}
    return graphs


def manifest_fields(name: str, architecture: dict, max_context: int, graphs: dict, **own) -> dict:
    """What every exporter's manifest holds (src/model/manifest.ts reads it): the format, the
    model's identity, then the exporter's `own` fields (in their order), then the KV layout and
    the files."""
    return {
        "format": "nfcot-onnx",
        "format_version": FORMAT_VERSION,
        "name": name,
        "architecture": architecture,
        "max_context": max_context,
        **own,
        "kv_cache": {"dtype": "float32",
                     "layout": ["num_blocks", "num_layers", 2, "num_kv_heads", "block_size", "head_dim"]},
        "tokenizer": "tokenizer.json",
        "tokenizer_config": "tokenizer_config.json",
        "chat_template": "chat_template.jinja",
        "graphs": graphs,
    }


def export_dir(out: str, model: NFCoTModel, flow: ShallowFlow | None, vae: StepVAE | None,
               name: str, extra: dict | None = None, default_temperature: float = 0.9,
               attention: str = "plain") -> dict:
    c = model.config
    graphs = export_graphs(out, model, flow, vae, attention=attention)
    tk.write(out)
    manifest = {
        **manifest_fields(
            name, {**c.to_dict(), "head_dim": c.head_dim}, c.max_position, graphs,
            latent={"num_thoughts": c.num_thoughts, "thought_dim": c.thought_dim,
                    "default_temperature": default_temperature, "span": "fixed"},
            special_tokens={"pad": tk.PAD, "unk": tk.UNK, "bos": tk.BOS, "eos": tk.EOS, "bot": tk.BOT, "eot": tk.EOT},
            reasoning_modes=["none", "explicit", "latent"],
            default_reasoning_mode="latent",
            # The explicit trace is every line but the last; the answer is the last line.
            reasoning_split={"answer": "last_line"}),
        **(extra or {}),
    }
    write_json(os.path.join(out, "manifest.json"), manifest)
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
    src.add_argument("--hf", metavar="DIR", help="a Hugging Face model directory (Llama / Qwen2 / Qwen3)")
    ap.add_argument("--overwrite", action="store_true", help="--hf: replace a non-empty OUT")
    ap.add_argument("--external-data", action="store_true",
                    help="--hf: weights in backbone.onnx.data even under 2 GB (tests)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--name")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", help="JSON file merged into the manifest (evaluation results, task)")
    ap.add_argument("--weights", choices=WEIGHTS, default="fp32",
                    help="backbone weight precision, made by onnxruntime's quantizers (nfcot/quantize.py)")
    ap.add_argument("--keep", help="with --weights int8/int4: MatMul groups kept float32 "
                                   "(default nf_head,thought_proj; '' for none)")
    ap.add_argument("--block", type=int, choices=BLOCKS,
                    help=f"with --weights int8/int4: quantization block along the input dimension (default {BLOCK}: "
                         "the size of llama.cpp's Q8_0 / Q4_0; 128 runs faster, README 'Weight precision')")
    ap.add_argument("--attention", choices=ATTENTION,
                    help="fused (default; plain with --weights fp16 or --hf): decode steps of up to 64 rows through "
                         "onnxruntime's fused CPU ops (nfcot/fused.py); the backbone holds the weights twice")
    ap.add_argument("--kv-dtype", choices=KV_DTYPES, default="float32",
                    help="float16: the graph takes and gives the KV pool in float16 (nfcot/kv_dtype.py)")
    args = ap.parse_args(argv)
    if args.attention is None:
        args.attention = "plain" if args.weights == "fp16" or args.hf else "fused"
    if args.attention == "fused" and args.weights == "fp16":
        ap.error("--weights fp16 needs --attention plain (onnxruntime's float16 converter does not handle the fused graph's If)")
    if args.keep is not None and args.weights in ("fp32", "fp16"):
        ap.error("--keep applies to --weights int8 / int4 only")
    if args.block is not None and args.weights in ("fp32", "fp16"):
        ap.error("--block applies to --weights int8 / int4 only")
    if args.weights != "fp32" or args.kv_dtype != "float32":
        ort_python()  # fail before exporting when the quantizer's venv is missing
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.hf:
        from .hf import HFError
        from .hf_export import export_hf
        try:
            m = export_hf(args.hf, args.out, args.name, args.overwrite, external=args.external_data or None,
                          attention=args.attention, flags=[a for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")])
        except HFError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2)
        report_export(m, f"{m['source']['hf_architecture']}, {'with NF-CoT extras' if 'latent' in m else 'text only'}",
                      args.out)
        requantize(args.out, args.weights, args.keep, args.kv_dtype, args.block)
        return
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
    m = export_dir(args.out, model, flow, vae, name, extra, attention=args.attention)
    report_export(m, f"{sum(p.numel() for p in model.parameters()):,} backbone parameters", args.out)
    requantize(args.out, args.weights, args.keep, args.kv_dtype, args.block)


def report_export(m: dict, what: str, out: str) -> None:
    print(f"exported {m['name']} ({what}) to {out}: {', '.join(m['graphs'])}")


# onnxruntime's quantizers need onnx >= 1.16 and numpy 2, which Debian's torch 1.13 and onnx 1.12
# cannot share a process with: they run in their own venv (scripts/test-deps.sh makes it).
ORT_VENV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-ort")


def ort_python() -> str:
    exe = os.environ.get("NFCOT_ORT_PYTHON") or os.path.join(ORT_VENV, "bin", "python")
    if not os.path.exists(exe):
        raise SystemExit(f"error: --weights needs onnxruntime's quantizers in {exe}: run `npm run test:deps` "
                         "(scripts/test-deps.sh makes models/.venv-ort) or set NFCOT_ORT_PYTHON")
    return exe


def requantize(out: str, weights: str, keep: str | None, kv_dtype: str = "float32", block: int | None = None) -> None:
    """Rewrites OUT's backbone at the given precision (nfcot/quantize.py in the onnxruntime venv)."""
    if weights == "fp32" and kv_dtype == "float32":
        return
    import subprocess
    cmd = [ort_python(), "-m", "nfcot.quantize", out, "--weights", weights, "--kv-dtype", kv_dtype]
    cmd += [] if keep is None else ["--keep", keep]
    cmd += [] if block is None else ["--block", str(block)]
    r = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if r.returncode != 0:
        raise SystemExit(f"error: quantizing {out} to {weights} failed (exit {r.returncode})")


if __name__ == "__main__":
    main()
