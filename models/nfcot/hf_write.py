"""Write a model in the Hugging Face layout (+ NF-CoT extras), the one format nfcot/hf.py loads.

  /usr/bin/python3 -m nfcot.hf_write --checkpoint runs/t31n/ckpt.pt --out hf/t31n   (our checkpoint -> HF dir)

Our own model (family nfcot-trace) is written as LlamaForCausalLM; its layer-0 positional heads,
which Llama does not have, are named in nfcot_config.json ("backbone") so the loader rebuilds them.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
from safetensors.torch import save_file

from . import extras as ex
from . import tokenizer as tk
from .model import NFCoTModel

HF_ARCH = {"nfcot-trace": "LlamaForCausalLM", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "qwen3": "Qwen3ForCausalLM"}
MODEL_TYPE = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}


def hf_config(model: NFCoTModel, dtype: torch.dtype, eos_ids: list, bos_id: int | None) -> dict:
    c = model.config
    arch = HF_ARCH[c.family]
    if c.family == "qwen2" and (not c.qkv_bias or c.o_bias):
        raise ValueError("Qwen2 has q/k/v biases and no o_proj bias")
    if c.qkv_bias != c.o_bias and c.family != "qwen2":
        raise ValueError(f"{arch}'s attention_bias covers q, k, v and o together")
    if c.qk_norm != (c.family == "qwen3"):
        raise ValueError("q/k norm is Qwen3's and only Qwen3's")
    d = {
        "architectures": [arch], "model_type": MODEL_TYPE[arch], "hidden_act": "silu",
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads, "head_dim": c.head_dim, "intermediate_size": c.intermediate_size,
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_position, "rope_theta": c.rope_theta,
        "rms_norm_eps": c.rms_eps, "tie_word_embeddings": c.tie_embeddings, "rope_scaling": c.rope_scaling,
        "torch_dtype": str(dtype).replace("torch.", ""), "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        "bos_token_id": bos_id, "attention_dropout": 0.0,
    }
    if c.family != "qwen2":
        d["attention_bias"] = c.qkv_bias
    if c.family in ("qwen2", "qwen3"):
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=c.num_layers)
    return d


def save_weights(d: str, tensors: dict, dtype: torch.dtype, shards: int = 1) -> list[str]:
    """model.safetensors, or `shards` files model-0000i-of-0000n.safetensors + the index."""
    names = list(tensors)
    if shards <= 1:
        save_file({k: tensors[k].detach().to(dtype).contiguous() for k in names}, os.path.join(d, "model.safetensors"),
                  metadata={"format": "pt"})
        return ["model.safetensors"]
    per = -(-len(names) // shards)
    files, weight_map, total = [], {}, 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        chunk = {k: tensors[k].detach().to(dtype).contiguous() for k in part}
        total += sum(t.numel() * t.element_size() for t in chunk.values())
        save_file(chunk, os.path.join(d, fname), metadata={"format": "pt"})
        del chunk
        weight_map.update({k: fname for k in part})
        files.append(fname)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    return files


def write_hf(d: str, model: NFCoTModel, flow=None, vae=None, *, tokenizer_json: dict, tokenizer_config: dict,
             eos_ids: list, bos_id: int | None = None, dtype: torch.dtype = torch.float32, shards: int = 1,
             bot_token: str = "<bot>", eot_token: str = "<eot>", default_temperature: float = 0.9) -> None:
    """The HF directory for model: config.json, weights, tokenizer files, generation_config.json,
    and with the NF-CoT heads nfcot_config.json + nfcot.safetensors."""
    os.makedirs(d, exist_ok=True)
    c = model.config
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf_config(model, dtype, eos_ids, bos_id), f, indent=1)
    sd = {k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))}
    if c.tie_embeddings:
        sd.pop("lm_head.weight")
    save_weights(d, sd, dtype, shards)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False, indent=1)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config, f, ensure_ascii=False, indent=1)
    gen = {"eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0], **({"bos_token_id": bos_id} if bos_id is not None else {})}
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=1)
    if c.latent:
        ex.write(d, model, flow, vae, bot_token=bot_token, eot_token=eot_token,
                 default_temperature=default_temperature)


def convert_checkpoint(ck_path: str, out: str) -> None:
    """Our trainer's checkpoint (nfcot.train) -> HF layout + NF-CoT extras, with our tokenizer."""
    from .export import load_checkpoint
    model, flow, vae, _ = load_checkpoint(ck_path)
    write_hf(out, model, flow, vae, tokenizer_json=tk.tokenizer_json(), tokenizer_config=tk.tokenizer_config(),
             eos_ids=[tk.EOS], bos_id=tk.BOS)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    convert_checkpoint(args.checkpoint, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
