"""Random-weight checkpoints in the Hugging Face layout, for tests and demos (never trained).

  /usr/bin/python3 -m nfcot.hf_fixture --arch qwen3 --out /tmp/q3 [--shards 2] [--dtype bfloat16] [--extras]

Tiny configs (2 layers) cover what each family adds: Llama with llama3 RoPE scaling and untied
embeddings, Qwen2's q/k/v biases, Qwen3's q/k norm, explicit head dim and tied embeddings. The
vocabulary is the project's word-level tokenizer (246 tokens) in an embedding of 256 rows: padded
past the tokenizer, as Qwen's is.
"""
from __future__ import annotations

import argparse
import math

import torch

from . import tokenizer as tk
from .flow import ShallowFlow
from .hf_write import write_hf
from .model import ModelConfig, NFCoTModel
from .vae import StepVAE

TINY = {
    "llama": dict(family="llama", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=96,
                  max_position=512, rope_theta=500000.0, rms_eps=1e-5, tie_embeddings=False,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "llama-tied": dict(family="llama", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4,
                       intermediate_size=96, max_position=256, rms_eps=1e-5, tie_embeddings=True,
                       qkv_bias=True, o_bias=True),
    "qwen2": dict(family="qwen2", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=96,
                  max_position=256, rope_theta=1000000.0, rms_eps=1e-6, qkv_bias=True, tie_embeddings=False),
    "qwen3": dict(family="qwen3", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, explicit_head_dim=32,
                  intermediate_size=96, max_position=256, rope_theta=1000000.0, rms_eps=1e-6, qk_norm=True,
                  tie_embeddings=True),
}
# Qwen3-0.6B's shape (its config.json), for the real-size demo.
QWEN3_06B = dict(family="qwen3", vocab_size=151936, hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8,
                 explicit_head_dim=128, intermediate_size=3072, max_position=40960, rope_theta=1000000.0,
                 rms_eps=1e-6, qk_norm=True, tie_embeddings=True)
TINY_VOCAB = 256


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights that make every part matter: matrices ~ N(0, 1/fan_in), norms 1 + N(0, 0.1^2),
    biases N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
        elif name.endswith("norm.weight") or ".norm" in name or name.endswith("_norm.weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


def tiny_model(arch: str, seed: int = 0, extras: bool = False):
    c = ModelConfig(vocab_size=TINY_VOCAB, positional_heads=(), latent=extras, thought_dim=8, num_thoughts=4,
                    **TINY[arch])
    torch.manual_seed(seed)
    model = NFCoTModel(c, init=False).eval()
    randomize(model, seed)
    flow = vae = None
    if extras:
        flow = ShallowFlow(c.thought_dim, c.num_thoughts, blocks=2, width=32).eval()
        vae = StepVAE(c.vocab_size, c.thought_dim, width=32).eval()
        randomize(flow, seed + 1)
        randomize(vae, seed + 2)
    return model, flow, vae


def tokenizer_files(family: str) -> tuple[dict, dict]:
    """The project's word-level tokenizer dressed as the family's: Qwen has no BOS token."""
    cfg = {**tk.tokenizer_config(), "chat_template": (
        "{% if bos_token %}{{ bos_token }}{% endif %}{% for m in messages %}<|user|>\n{{ m['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")}
    if family.startswith("qwen"):
        cfg["bos_token"] = None
    return tk.tokenizer_json(), cfg


def write_tiny(out: str, arch: str, seed: int = 0, shards: int = 1, dtype=torch.float32, extras: bool = False):
    model, flow, vae = tiny_model(arch, seed, extras)
    tj, tc = tokenizer_files(model.config.family)
    write_hf(out, model, flow, vae, tokenizer_json=tj, tokenizer_config=tc, eos_ids=[tk.EOS, tk.EOT],
             bos_id=None if model.config.family.startswith("qwen") else tk.BOS, dtype=dtype, shards=shards)
    return model, flow, vae


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(TINY), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--extras", action="store_true", help="with random NF-CoT extras")
    args = ap.parse_args(argv)
    write_tiny(args.out, args.arch, args.seed, args.shards, getattr(torch, args.dtype), args.extras)
    print(f"wrote {args.arch} to {args.out}")


if __name__ == "__main__":
    main()
