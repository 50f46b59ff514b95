"""Parity cases for exported Hugging Face checkpoints (checked by test/hf-parity.test.ts through
onnxruntime-node): a tiny random checkpoint of one family is written in the HF layout, exported
with `nfcot.export --hf`, and the project's PyTorch model, loaded from the same directory, gives
the reference outputs for (a) one ragged paged batch (nfcot.parity.make_case) and (b) whole
sequences, which the test decodes step by step through its own paged KV pool.

  /usr/bin/python3 -m nfcot.hf_parity --arch qwen3 --work DIR [--shards 2] [--dtype bfloat16] [--extras] [--external-data]
      [--weights int8]   (the reference stays float32: the test's bound is the quantization's)
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from .export import requantize
from .hf import load_hf
from .hf_export import export_hf
from .hf_fixture import TINY, write_tiny
from .parity import b64, make_case
import numpy as np


@torch.no_grad()
def greedy(model, prompt: str, max_tokens: int, eos_ids: list, n_tokens: int) -> dict:
    """Greedy continuation of prompt as the server runs it: ids past the tokenizer's (which have
    no token) never chosen, the first eos id ends it (not part of the text)."""
    from . import tokenizer as tk
    ids = tk.encode(prompt)
    out, finish = [], "length"
    for _ in range(max_tokens):
        seq = torch.tensor([ids + out])
        h, _ = model(seq, None, None, torch.arange(seq.shape[1])[None])
        nxt = int(model.heads(h[0, -1:])[0][0, :n_tokens].argmax())
        if nxt in eos_ids:
            finish = "stop"
            break
        out.append(nxt)
    return {"prompt": prompt, "prompt_ids": ids, "ids": out, "text": tk.decode(out), "finish_reason": finish}


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
    ap.add_argument("--arch", choices=sorted(TINY) + ["nfcot-trace"], required=True,
                    help="nfcot-trace: our own model (fresh random weights) converted with nfcot.hf_write")
    ap.add_argument("--work", required=True, help="folder for hf/, out/ and case.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--external-data", action="store_true")
    ap.add_argument("--weights", choices=["fp32", "int8", "int4"], default="fp32",
                    help="quantize the export (nfcot.quantize) before the comparison")
    ap.add_argument("--attention", choices=["plain", "fused"], default="plain",
                    help="the export's attention path (nfcot.export --attention)")
    ap.add_argument("--prompt", help="also the greedy continuation of this text (case['greedy'])")
    ap.add_argument("--max-tokens", type=int, default=12)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    hf, out = os.path.join(args.work, "hf"), os.path.join(args.work, "out")
    if args.arch == "nfcot-trace":
        from . import tokenizer as tk
        from .hf_write import write_hf
        from .parity import fresh_model
        model, flow, vae = fresh_model(args.seed)
        write_hf(hf, model, flow, vae, tokenizer_json=tk.tokenizer_json(), tokenizer_config=tk.tokenizer_config(),
                 eos_ids=[tk.EOS, tk.EOT], bos_id=tk.BOS, dtype=getattr(torch, args.dtype), shards=args.shards)
    else:
        write_tiny(hf, args.arch, args.seed, args.shards, getattr(torch, args.dtype), args.extras)
    manifest = export_hf(hf, out, external=True if args.external_data else None, attention=args.attention)
    if args.weights != "fp32":
        requantize(out, args.weights, None)
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
    hm = load_hf(hf)
    ref = hm.model  # the reference: the project's PyTorch model on the same weights
    case = {"paged": make_case(ref, args.seed), "decode": decode_case(ref, args.seed),
            "manifest": manifest}
    if args.prompt:
        from .hf import tokenizer_size
        case["greedy"] = greedy(ref, args.prompt, args.max_tokens, hm.eos_token_ids, tokenizer_size(hf))
    with open(os.path.join(args.work, "case.json"), "w") as f:
        json.dump(case, f)


if __name__ == "__main__":
    main()
