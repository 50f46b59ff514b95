"""Compare the project's PyTorch model with Hugging Face transformers' own implementation on the
tiny random checkpoints of every supported family (not part of CI: transformers is not a test
dependency). Run from models/ with a Python that has transformers (models/README.md says how):

  python scripts/check_transformers.py

Prints the max |logit difference| per family and exits non-zero past the bound (1e-4).
"""
from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def _shim_torch_1x() -> None:
    """transformers 4.51 imports torch.distributed.tensor unconditionally, which torch 1.13
    (Debian's) lacks; only tensor parallelism uses it, so empty stand-ins let the single-process
    eager path import; likewise torch.compiler (nothing is compiled here) and the float8 dtypes (a table entry). Nothing on torch >= 2.5."""
    import types
    if not hasattr(torch, "compiler"):  # torch 1.x: nothing is ever being compiled
        torch.compiler = types.SimpleNamespace(is_compiling=lambda: False, is_exporting=lambda: False,
                                               disable=lambda *a, **k: (lambda f: f))
    for name in ("float8_e4m3fn", "float8_e5m2"):  # dtype table entries; no tensor here has them
        if not hasattr(torch, name):
            setattr(torch, name, object())
    if hasattr(torch.distributed, "tensor"):
        return
    mod = types.ModuleType("torch.distributed.tensor")
    for name in ("DTensor", "Placement", "Replicate", "Shard"):
        setattr(mod, name, type(name, (), {}))
    sys.modules["torch.distributed.tensor"] = mod
    torch.distributed.tensor = mod


_shim_torch_1x()
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from nfcot.hf import load_hf  # noqa: E402
from nfcot.hf_fixture import TINY, write_tiny  # noqa: E402

BOUND = 1e-4
CASES = [("llama", 2, torch.bfloat16), ("llama-tied", 1, torch.float32), ("qwen2", 1, torch.float16),
         ("qwen3", 1, torch.float32)]


def transformers_model(d: str):
    """transformers' model class from config.json, with the checkpoint's tensors by name (strict:
    only a tied lm_head may be absent). Built from the config rather than with from_pretrained,
    whose loader needs torch >= 2; the forward pass, what is compared, is transformers' own."""
    config = AutoConfig.from_pretrained(d)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    sd = {}
    for f in sorted(os.listdir(d)):
        if f.startswith("model") and f.endswith(".safetensors"):
            sd.update({k: v.float() for k, v in load_file(os.path.join(d, f)).items()})
    missing, unexpected = model.load_state_dict(sd, strict=False)
    allowed = ["lm_head.weight"] if config.tie_word_embeddings else []
    assert list(missing) == allowed and not unexpected, (missing, unexpected)
    model.tie_weights()
    return model.eval()


@torch.no_grad()
def main() -> int:
    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    torch.set_num_threads(1)
    worst = 0.0
    for arch, shards, dtype in CASES:
        with tempfile.TemporaryDirectory() as d:
            write_tiny(d, arch, seed=5, shards=shards, dtype=dtype)
            ours = load_hf(d).model
            theirs = transformers_model(d)
            g = torch.Generator().manual_seed(11)
            # Positions past original_max_position_embeddings (64) exercise llama3 scaling's long range.
            T = 150
            ids = torch.randint(0, ours.config.vocab_size, (2, T), generator=g)
            pos = torch.arange(T)[None].expand(2, T)
            a = ours.heads(ours(ids, None, None, pos)[0])[0]
            b = theirs(input_ids=ids).logits
            diff = (a - b).abs().max().item()
            worst = max(worst, diff)
            print(f"{arch:11s} ({TINY[arch]['family']}, {str(dtype).replace('torch.', '')} weights, {shards} shard(s)): "
                  f"max |logit diff| = {diff:.3e} over {a.numel():,} logits (max |logit| {b.abs().max().item():.2f})")
    print("PASS" if worst < BOUND else "FAIL", f"(bound {BOUND})")
    return 0 if worst < BOUND else 1


if __name__ == "__main__":
    raise SystemExit(main())
