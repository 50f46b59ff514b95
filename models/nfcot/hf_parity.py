"""Parity cases for exported Hugging Face checkpoints (checked by test/hf-parity.test.ts through
onnxruntime-node): a tiny random checkpoint of one family is written in the HF layout, exported
with `nfcot.export --hf`, and the project's PyTorch model, loaded from the same directory, gives
the reference outputs for (a) one ragged paged batch (nfcot.parity.make_case) and (b) whole
sequences, which the test decodes step by step through its own paged KV pool.

  /usr/bin/python3 -m nfcot.hf_parity --arch qwen3 --work DIR [--shards 2] [--dtype bfloat16] [--extras] [--external-data]
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from .hf import load_hf
from .hf_export import export_hf
from .hf_fixture import TINY, write_tiny
from .parity import b64, make_case
import numpy as np


@torch.no_grad()
def decode_case(model, seed: int, lengths=(11, 7), prefill=(5, 3)) -> dict:
    """Token sequences and the dense forward's logits at every position of each."""
    g = torch.Generator().manual_seed(seed + 500)
    seqs, logits = [], []
    for T in lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, T), generator=g)
        h, _ = model(ids, None, None, torch.arange(T)[None])
        logits.append(b64(model.heads(h[0])[0], np.float32))
        seqs.append(ids[0].tolist())
    return {"sequences": seqs, "prefill": list(prefill), "logits": logits}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(TINY), required=True)
    ap.add_argument("--work", required=True, help="folder for hf/, out/ and case.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--external-data", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    hf, out = os.path.join(args.work, "hf"), os.path.join(args.work, "out")
    write_tiny(hf, args.arch, args.seed, args.shards, getattr(torch, args.dtype), args.extras)
    manifest = export_hf(hf, out, external=True if args.external_data else None)
    ref = load_hf(hf).model  # the reference: the project's PyTorch model on the same weights
    case = {"paged": make_case(ref, args.seed), "decode": decode_case(ref, args.seed),
            "manifest": manifest}
    with open(os.path.join(args.work, "case.json"), "w") as f:
        json.dump(case, f)


if __name__ == "__main__":
    main()
