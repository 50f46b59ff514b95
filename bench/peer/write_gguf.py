"""GGUF files for llama.cpp from an exported float32 model directory: the same weights and shapes
(read from backbone.onnx's initializers), written with the `gguf` PyPI package at F32, Q8_0 or
Q4_0 (gguf.quants, the reference quantizers). For the peer benchmark only (bench/peer/llamacpp.ts).

  models/.venv-ort/bin/python bench/peer/write_gguf.py MODEL_DIR OUT.gguf --type Q8_0

Architecture: llama (Llama-style: RMSNorm, RoPE, SwiGLU, GQA), or qwen3 when the manifest's family
is qwen3 (per-head q/k RMSNorm). NF-CoT extras (thought projection, NF head, layer 0's
positional heads) have no llama.cpp counterpart and are left out: they cost little per step.
The vocabulary is placeholder pieces (byte tokens for ASCII, then "t<id>"): both engines are fed
token ids, and llama.cpp needs a vocabulary to load.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np
import onnx
from onnx import numpy_helper

import gguf
from gguf.quants import quantize

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from nfcot.fused_graph import plain_graph  # noqa: E402  (a fused export's weights sit in its plain branch)

TYPES = {"F32": gguf.GGMLQuantizationType.F32, "Q8_0": gguf.GGMLQuantizationType.Q8_0,
         "Q4_0": gguf.GGMLQuantizationType.Q4_0}
FTYPE = {"F32": gguf.LlamaFileType.ALL_F32, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
         "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
MATMUL = re.compile(r"/(?:mlp/)?(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)(?:_(\d+))?/MatMul$")
NORM = re.compile(r"^/(input_layernorm|post_attention_layernorm|q_norm|k_norm)(?:_(\d+))?/Mul_1$")
GGUF_NAME = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
             "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def weights_of(model_dir: str, manifest: dict) -> dict:
    """{gguf tensor name: float32 array [out, in] or [n]} from backbone.onnx."""
    graph = plain_graph(onnx.load(os.path.join(model_dir, manifest["graphs"]["backbone"]["file"])).graph)
    init = {i.name: i for i in graph.initializer}
    # torch shares equal initializers (all-ones norms of a random model) through Identity nodes.
    for n in graph.node:
        if n.op_type == "Identity" and n.input[0] in init:
            init[n.output[0]] = init[n.input[0]]
    arr = lambda name: numpy_helper.to_array(init[name]).astype(np.float32)  # noqa: E731
    out = {}
    for n in graph.node:
        consts = [x for x in n.input if x in init]
        if n.op_type != "MatMul" or not consts:
            continue
        m = MATMUL.search(n.name)
        if m:
            out[f"blk.{int(m.group(2) or 0)}.{GGUF_NAME[m.group(1)]}.weight"] = arr(consts[0]).T.copy()
        elif "lm_head" in n.name:
            out["output.weight"] = arr(consts[0]).T.copy()
    # Norm weights by the node that applies them (with shared initializers a name may not say the layer).
    for n in graph.node:
        consts = [x for x in n.input if x in init]
        m = NORM.search(n.name)
        if n.op_type == "Mul" and consts and m:
            kind = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                    "q_norm": "attn_q_norm", "k_norm": "attn_k_norm"}[m.group(1)]
            out[f"blk.{int(m.group(2) or 0)}.{kind}.weight"] = arr(consts[0])
        elif n.op_type == "Mul" and consts and n.name == "/norm/Mul_1":
            out["output_norm.weight"] = arr(consts[0])
    out["token_embd.weight"] = arr("m.model.embed_tokens.weight")
    # A tied LM head has no weight of its own: llama.cpp then reads token_embd (F32), as our
    # float32 export reads the embedding; write() gives quantized types a copy (see there).
    return out


def permute_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's llama architecture rotates adjacent pairs; Hugging Face's rotate_half rotates
    halves: reorder q/k rows as convert_hf_to_gguf.py does."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write(model_dir: str, out: str, qtype: str) -> None:
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    if manifest.get("weights", {}).get("dtype", "float32") != "float32":
        raise SystemExit(f"{model_dir}: give the float32 export (weights are {manifest['weights']['dtype']})")
    a = manifest["architecture"]
    arch = "qwen3" if a.get("family") == "qwen3" else "llama"
    L, H, kvH, hd, V = a["num_layers"], a["num_heads"], a["num_kv_heads"], a["head_dim"], a["vocab_size"]
    w = weights_of(model_dir, manifest)
    if "output.weight" not in w and qtype != "F32":
        # Our int8 / int4 exports give a tied head a quantized copy and keep the embedding float32
        # (models/nfcot/tied_head.py): the same here, as output.weight at the file's type.
        w["output.weight"] = w["token_embd.weight"]
    expected = 2 + ("output.weight" in w) + L * (9 + (2 if arch == "qwen3" else 0))
    if len(w) != expected:
        raise SystemExit(f"found {len(w)} tensors in {model_dir}, expected {expected} for {arch}")
    g = gguf.GGUFWriter(out, arch)
    g.add_name(manifest["name"])
    g.add_context_length(a["max_position"])
    g.add_embedding_length(a["hidden_size"])
    g.add_block_count(L)
    g.add_feed_forward_length(a["intermediate_size"])
    g.add_head_count(H)
    g.add_head_count_kv(kvH)
    g.add_key_length(hd)
    g.add_value_length(hd)
    g.add_rope_dimension_count(hd)
    g.add_rope_freq_base(a["rope_theta"])
    g.add_layer_norm_rms_eps(a["rms_eps"])
    g.add_file_type(FTYPE[qtype])
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(128)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 128
    tokens, types = tokens[:V], types[:V]
    tokens += [f"t{i}".encode() for i in range(len(tokens), V)]
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    g.add_tokenizer_model("llama")
    g.add_token_list(tokens)
    g.add_token_scores([0.0] * V)
    g.add_token_types(types)
    g.add_unk_token_id(0)
    g.add_bos_token_id(1)
    g.add_eos_token_id(2)
    g.add_add_bos_token(False)
    for name, t in w.items():
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            t = permute_rope(t, H if "attn_q" in name else kvH)
        # Matrices at the file's type, as llama-quantize does for these types (norms stay F32);
        # the embedding stays F32 like the ONNX side's Gather (a lookup: its size costs no time).
        if t.ndim == 2 and qtype != "F32" and name != "token_embd.weight":
            g.add_tensor(name, quantize(t, TYPES[qtype]), raw_dtype=TYPES[qtype])
        else:
            g.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--type", choices=sorted(TYPES), default="F32")
    args = ap.parse_args()
    write(args.model_dir, args.out, args.type)
    print(f"wrote {args.out} ({args.type}, {os.path.getsize(args.out) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
