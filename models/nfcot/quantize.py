"""Weight precision of an exported model directory, made with onnxruntime's own tools.

Runs in the onnxruntime venv (models/.venv-ort, made by scripts/test-deps.sh: onnxruntime's
quantizers need a newer onnx and numpy than Debian's torch 1.13 works with); `nfcot.export
--weights` calls it after writing the float32 graphs. Imports no torch.

  models/.venv-ort/bin/python -m nfcot.quantize MODEL_DIR --weights int8 [--keep nf_head,thought_proj]
      [--block 64] [--kv-dtype float16]

- fp16: every float32 weight and activation of the backbone in float16
  (onnxruntime.transformers.float16), graph inputs and outputs stay float32 (the runner's
  contract); --keep does not apply. Meant for the CUDA provider; onnxruntime's CPU provider
  runs it too (tested), though not faster.
- int8: MatMulNBits with 8-bit symmetric blocks of 64 along the input dimension,
  onnxruntime's MatMulNBitsQuantizer.
- int4: MatMulNBits with 4-bit symmetric blocks of 64, same tool. accuracy_level 4: activations
  quantized to int8 per block inside the kernel, as llama.cpp does.
- Blocks of 64 with MatMulNBits' float32 scales are the size of llama.cpp's Q8_0 / Q4_0 (32
  weights with a float16 scale): 8.5 / 4.5 bits per weight. A single stream's decode step reads
  every weight once, so its time follows the bytes: blocks of 32 (Q8_0's and Q4_0's block, 9 / 5
  bits) are slower; --block 128 is smaller and faster still (README, "Weight precision": speed
  and the shipped model's accuracy at each block).

Only MatMuls with a constant weight are touched; the attention MatMuls, the embedding Gather and
the RMSNorm weights stay float32. A tied LM head (the embedding read as the head) gets a quantized
copy of its own at int8 / int4 (nfcot/tied_head.py) unless lm_head is kept. --keep names MatMul
groups that stay float32 (matched against the exporter's node names: lm_head, nf_head,
thought_proj, q_proj, k_proj, v_proj, o_proj, mlp).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

from .fused_graph import branches
from .report import write_json
from .tied_head import collapse_single_row_head, untie

WEIGHTS = ("fp32", "fp16", "int8", "int4")
KV_DTYPES = ("float32", "float16")
DTYPE = {"fp32": "float32", "fp16": "float16", "int8": "int8", "int4": "int4"}
# The NF head and the thought projection decide every latent thought; they are small.
DEFAULT_KEEP = ("nf_head", "thought_proj")
GROUPS = ("lm_head", "nf_head", "thought_proj", "q_proj", "k_proj", "v_proj", "o_proj", "mlp")
BLOCK = 64  # float32 scales: Q8_0's / Q4_0's bits per weight (module docstring)
BLOCKS = (16, 32, 64, 128, 256)  # --block on nfcot.quantize and nfcot.export


def kept_nodes(graph, keep) -> list[str]:
    """The MatMul / Gemm nodes of the kept groups (in both branches of a fused export)."""
    if not keep:
        return []
    pat = re.compile("|".join(re.escape(k) for k in keep))
    return [n.name for b in branches(graph) for n in b.node if n.op_type in ("MatMul", "Gemm") and pat.search(n.name)]


def quantize_model(model, weights: str, keep, block: int = BLOCK, symmetric: bool = True, accuracy_level: int = 4):
    """The quantized ModelProto (fp32: the model itself)."""
    if weights == "fp32":
        return model
    exclude = kept_nodes(model.graph, keep)
    if weights == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        return convert_float_to_float16(model, keep_io_types=True, node_block_list=exclude, disable_shape_infer=True)
    from onnx import ModelProto
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    from onnxruntime.quantization.quant_utils import QuantFormat
    bits = 8 if weights == "int8" else 4
    cfg = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, accuracy_level=accuracy_level,
                                       quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",),
                                       bits=bits)

    def nbits(m):
        q = MatMulNBitsQuantizer(m, bits=bits, block_size=block, is_symmetric=symmetric,
                                 accuracy_level=accuracy_level, nodes_to_exclude=exclude, algo_config=cfg)
        q.process()
        return q.model.model

    parts = branches(model.graph)
    if len(parts) == 1:
        return nbits(model)
    # A fused export's branches are quantized as models of their own: the quantizer rebuilds an
    # If node with onnx.helper, which serializes its branches, and fails past 2 GB (the
    # Qwen3-0.6B-shaped fused export). Each branch reads the outer graph's inputs only.
    for g in parts:
        sub = ModelProto()
        sub.ir_version = model.ir_version
        sub.opset_import.extend(model.opset_import)
        sub.graph.CopyFrom(g)
        g.Clear()
        sub.graph.input.extend(model.graph.input)
        out = nbits(sub)
        del out.graph.input[:]
        g.CopyFrom(out.graph)
        have = {o.domain for o in model.opset_import}
        model.opset_import.extend(o for o in out.opset_import if o.domain not in have)
    return model


def quantize_dir(model_dir: str, weights: str = "fp32", keep=DEFAULT_KEEP, kv_dtype: str = "float32",
                 block: int = BLOCK) -> dict:
    """Rewrites MODEL_DIR/backbone.onnx at the given weight precision and KV cache dtype and
    records both in the manifest."""
    import onnx
    import onnxruntime

    from .kv_dtype import kv_to_float16

    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"--kv-dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
    if weights not in WEIGHTS:
        raise ValueError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    bad = [k for k in keep if k not in GROUPS]
    if bad:
        raise ValueError(f"--keep: unknown group(s) {', '.join(bad)}; known: {', '.join(GROUPS)}")
    if weights == "fp16":
        # onnxruntime's float16 converter leaves float32/float16 mismatches at the edges of a kept
        # group (measured: the graph then fails to load), so float16 converts every node.
        keep = ()
    mpath = os.path.join(model_dir, "manifest.json")
    with open(mpath) as f:
        manifest = json.load(f)
    spec = manifest["graphs"]["backbone"]
    have = manifest.get("weights", {}).get("dtype", "float32")
    if weights != "fp32" and have != "float32":
        raise ValueError(f"{model_dir}: the backbone's weights are already {have}; quantize a float32 export")
    if manifest["kv_cache"]["dtype"] == "float16" and weights != "fp32":
        raise ValueError(f"{model_dir}: quantize the weights before switching the KV cache to float16")
    if weights == "fp16" and spec.get("attention") == "fused":
        raise ValueError(f"{model_dir}: float16 weights need a plain-attention export (nfcot.export --attention plain): "
                         "onnxruntime's float16 converter breaks the fused graph's If")
    path = os.path.join(model_dir, spec["file"])
    model = onnx.load(path)
    if weights != "fp32":  # the quantizers and the float16 converter get the tied head as exported
        collapse_single_row_head(model)
    untied = untie(model) if weights in ("int8", "int4") and "lm_head" not in keep else 0
    kept = kept_nodes(model.graph, keep) if weights != "fp32" else []
    out = quantize_model(model, weights, keep, block)
    if kv_dtype == "float16":
        out = kv_to_float16(out)
        manifest["kv_cache"]["dtype"] = "float16"
        for x in spec["inputs"] + spec["outputs"]:
            if x["name"] in ("kv_pool", "new_kv"):
                x["dtype"] = "float16"
    tmp = path + ".partial"
    external = "external_data" in spec
    if external:
        data = spec["external_data"]
        if os.path.exists(os.path.join(model_dir, data)):
            os.remove(os.path.join(model_dir, data))
        onnx.save_model(out, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                        size_threshold=1024)
    else:
        onnx.save_model(out, tmp)
    os.replace(tmp, path)
    for f in [path] + ([os.path.join(model_dir, spec["external_data"])] if external else []):
        os.chmod(f, 0o644)  # onnx writes external data 0600; the server may run as another user
    if weights == "fp32":
        write_json(mpath, manifest)
        return manifest
    ops = sorted({n.op_type for n in out.graph.node if n.op_type in ("MatMulNBits", "MatMul")})
    manifest["weights"] = {
        "dtype": DTYPE[weights],
        "tool": f"onnxruntime {onnxruntime.__version__}",
        **({"block_size": block, "symmetric": True, "op": "MatMulNBits"} if weights in ("int8", "int4") else {}),
        "kept_float32": sorted(set(keep)),
        "kept_nodes": len(kept),
        "ops": ops,
        **({"tied_lm_head": "quantized copy"} if untied else {}),
    }
    write_json(mpath, manifest)
    return manifest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--weights", default="fp32", choices=WEIGHTS, help="fp32: leave the weights as they are")
    ap.add_argument("--kv-dtype", default="float32", choices=KV_DTYPES,
                    help="float16: the KV pool in float16 (nfcot/kv_dtype.py), half the memory per block")
    ap.add_argument("--keep", default=",".join(DEFAULT_KEEP),
                    help=f"MatMul groups kept float32, comma separated ('' for none); default {','.join(DEFAULT_KEEP)}")
    ap.add_argument("--block", type=int, default=BLOCK, choices=BLOCKS,
                    help=f"int8 / int4 quantization block along the input dimension (default {BLOCK}: the size of llama.cpp's Q8_0 / Q4_0)")
    args = ap.parse_args(argv)
    logging.getLogger("onnxruntime").setLevel(logging.WARNING)  # the quantizer logs every node it skips
    keep = tuple(k for k in args.keep.split(",") if k)
    try:
        m = quantize_dir(args.model_dir, args.weights, keep, args.kv_dtype, args.block)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    w = m.get("weights", {}).get("dtype", "float32")
    print(f"{args.model_dir}: backbone weights {w}"
          + (f" (kept float32: {', '.join(m['weights']['kept_float32']) or 'none'})" if w not in ("float32", "float16") else "")
          + f", KV cache {m['kv_cache']['dtype']}")


if __name__ == "__main__":
    main()
