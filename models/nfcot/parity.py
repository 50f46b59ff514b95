"""Write a fresh random parity case for the backbone graph: inputs with a partly filled paged pool
(scattered blocks, junk in unused slots, ragged rows, thought and token positions) and PyTorch's
dense outputs for them. test/model-parity.test.ts runs the case through onnxruntime-node.

  /usr/bin/python3 -m nfcot.parity --fresh DIR --out case.json [--seed N]   (random weights)
  /usr/bin/python3 -m nfcot.parity --checkpoint CK --out case.json
"""
from __future__ import annotations

import argparse
import base64
import json

import numpy as np
import torch

from . import tokenizer as tk
from .export import PRESETS, export_dir, load_checkpoint
from .flow import ShallowFlow
from .fused import FUSED_MAX_BATCH
from .model import ModelConfig, NFCoTModel
from .vae import StepVAE


def b64(t: torch.Tensor, dtype) -> dict:
    a = np.ascontiguousarray(t.detach().numpy().astype(dtype))
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


# Cached and new positions per row of each case. mixed: a prefill chunk on an empty cache, a
# decode step, a chunk over a partly filled pool. decode: single-position rows (the fused path of
# an `--attention fused` export), odd rows thought steps. decode_wide: more single-position rows
# than that path takes (nfcot/fused.py FUSED_MAX_BATCH): the plain branch.
CASES = {"mixed": ([7, 0, 13], [4, 1, 3]),
         "decode": ([7, 0, 13, 5, 21, 1], [1] * 6),
         "decode_wide": ([(5 * i + 3) % 24 for i in range(FUSED_MAX_BATCH + 1)], [1] * (FUSED_MAX_BATCH + 1))}


@torch.no_grad()
def make_case(model, seed: int, block_size: int = 4, past=CASES["mixed"][0], new=CASES["mixed"][1],
              thought_rows: bool = False) -> dict:
    """thought_rows: the new positions of odd rows are thoughts (else 30% of all positions are)."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    L, kvh, hd, D = c.num_layers, c.num_kv_heads, c.head_dim, c.thought_dim
    B, S = len(past), max(new)
    NB = max(16, sum((p + block_size - 1) // block_size for p in past) + 4)
    pool = torch.randn(NB, L, 2, kvh, block_size, hd, generator=g) * 3.0   # junk everywhere at first
    perm = torch.randperm(NB, generator=g).tolist()
    MB = max((p + block_size - 1) // block_size for p in past) or 1
    tables = torch.zeros(B, MB, dtype=torch.long)
    ids = torch.zeros(B, S, dtype=torch.long)
    th = torch.zeros(B, S, D)
    ist = torch.zeros(B, S)
    pos = torch.zeros(B, S, dtype=torch.long)
    ref_logits, ref_mu, ref_ls, ref_kv, gather = [], [], [], torch.zeros(L, 2, B, kvh, S, hd), []
    for r in range(B):
        T = past[r] + new[r]
        rid = torch.randint(0, c.vocab_size, (1, T), generator=g)
        rth = torch.randn(1, T, D, generator=g)
        rist = (torch.rand(1, T, generator=g) < 0.3).float() * float(c.latent)
        if thought_rows:
            rist[0, past[r]:] = float(c.latent and r % 2 == 1)
        rpos = torch.arange(T)[None]
        h, kv = model(rid, rth, rist, rpos)
        nblocks = (past[r] + block_size - 1) // block_size
        for b in range(nblocks):
            blk = perm.pop()
            tables[r, b] = blk
            for i in range(block_size):
                t = b * block_size + i
                if t < past[r]:
                    for l in range(L):
                        pool[blk, l, 0, :, i] = kv[l][0][0, :, t]
                        pool[blk, l, 1, :, i] = kv[l][1][0, :, t]
        ids[r, :new[r]] = rid[0, past[r]:]
        th[r, :new[r]] = rth[0, past[r]:]
        ist[r, :new[r]] = rist[0, past[r]:]
        pos[r, :new[r]] = rpos[0, past[r]:]
        for l in range(L):
            ref_kv[l, 0, r, :, :new[r]] = kv[l][0][0, :, past[r]:]
            ref_kv[l, 1, r, :, :new[r]] = kv[l][1][0, :, past[r]:]
        logits, mu, ls = model.heads(h[0, past[r]:])
        for s in range(new[r]):
            gather.append(r * S + s)
            ref_logits.append(logits[s])
            if c.latent:
                ref_mu.append(mu[s]); ref_ls.append(ls[s])
    case = {
        "seed": seed, "block_size": block_size, "new_lens": new,
        "inputs": {"input_ids": b64(ids, np.int64), "thought_inputs": b64(th, np.float32),
                   "is_thought": b64(ist, np.float32), "positions": b64(pos, np.int64),
                   "past_lens": b64(torch.tensor(past), np.int64), "kv_pool": b64(pool, np.float32),
                   "block_tables": b64(tables, np.int64), "gather_index": b64(torch.tensor(gather), np.int64)},
        "expected": {"logits": b64(torch.stack(ref_logits), np.float32), "new_kv": b64(ref_kv, np.float32)},
    }
    if c.latent:
        case["expected"].update(mu=b64(torch.stack(ref_mu), np.float32), log_sigma=b64(torch.stack(ref_ls), np.float32))
    else:  # the text-only graph has no thought inputs (its rows above are all tokens)
        del case["inputs"]["thought_inputs"], case["inputs"]["is_thought"]
    return case


@torch.no_grad()
def flow_case(flow, vae, K: int, D: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed + 1000)
    e = torch.randn(3, K, D, generator=g)
    u, logdet = flow(e)
    return {"e": b64(e, np.float32), "u": b64(u, np.float32), "log_det": b64(logdet, np.float32),
            "inverse_e": b64(flow.inverse(u), np.float32),
            "step_logits": b64(vae.decode_logits(flow.inverse(u)), np.float32)}


def fresh_model(seed: int):
    """A small model with random weights everywhere (heads and flow included)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(tk.VOCAB), **PRESETS["tiny"])
    model = NFCoTModel(cfg)
    torch.nn.init.normal_(model.nf_head.weight, 0.0, 0.1)
    flow = ShallowFlow(cfg.thought_dim, cfg.num_thoughts, blocks=2)
    for blk in flow.blocks:
        torch.nn.init.normal_(blk.out.weight, 0.0, 0.1)
    vae = StepVAE(cfg.vocab_size, cfg.thought_dim)
    return model.eval(), flow.eval(), vae.eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="make the case for a trained checkpoint")
    src.add_argument("--fresh", metavar="DIR", help="export a fresh random model to DIR and make its case")
    ap.add_argument("--attention", choices=("fused", "plain"), default="plain", help="--fresh: the exporter's attention path")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.fresh:
        model, flow, vae = fresh_model(args.seed)
        export_dir(args.fresh, model, flow, vae, "parity-fresh", attention=args.attention)
    else:
        model, flow, vae, _ = load_checkpoint(args.checkpoint)
    c = model.config
    case = make_case(model, args.seed)
    for name in ("decode", "decode_wide"):
        past, new = CASES[name]
        case[name] = make_case(model, args.seed + 1, past=past, new=new, thought_rows=True)
    case["flow"] = flow_case(flow, vae, c.num_thoughts, c.thought_dim, args.seed)
    with open(args.out, "w") as f:
        json.dump(case, f)


if __name__ == "__main__":
    main()
