"""Evaluate a checkpoint on the test split: accuracy per reasoning mode (greedy text; latent
thoughts at T_z = 0, i.e. u = mu), mean reasoning positions, latent pass@k at the default latent
temperature, decoded-thought accuracy, and the majority-answer baseline.

  /usr/bin/python3 -m nfcot.evaluate --checkpoint runs/small/ckpt.pt [--count 1000] [--json out.json]
  /usr/bin/python3 -m nfcot.evaluate --model-dir nfcot-trace-small [--programs data/test.jsonl]

--model-dir evaluates an exported model directory (its weights read back from the ONNX graphs,
onnx_weights.py: the same numbers as the checkpoint it was exported from). --programs evaluates the
programs of a JSON-lines file (its `source` fields) instead of drawing the split.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter

import torch

from . import tokenizer as tk
from .export import load_checkpoint
from .generate import correctness, generate, parse_answer
from .onnx_weights import load_model_dir
from .report import emit
from .task import parse_program, split
from .vae import step_tokens


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@torch.no_grad()
def thought_step_accuracy(model, flow, vae, progs, K) -> float:
    """Share of sampled-at-mean thoughts (steps 2.., the first is a copy) that decode to the right step."""
    _, thoughts, _ = generate(model, progs, "latent", 0.0)
    logits = vae.decode_logits(flow.inverse(thoughts))
    pred = logits.argmax(-1)
    right = total = 0
    for i, p in enumerate(progs):
        want = step_tokens(p, K)
        for s in range(1, len(p.steps)):
            total += 1
            right += pred[i, s].tolist() == want[s]
    return right / max(total, 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint")
    src.add_argument("--model-dir")
    ap.add_argument("--programs", help="JSON lines with a `source` per program (default: draw the test split)")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=16, help="latent samples per program for pass@k")
    ap.add_argument("--temperature", type=float, default=0.9, help="latent temperature for pass@k")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model, flow, vae, ck = load_checkpoint(args.checkpoint)
        m = ck["m"]
    else:
        model, flow, vae, manifest = load_model_dir(args.model_dir)
        m = manifest["task"]["M"]
    if args.programs:
        with open(args.programs) as f:
            progs = [parse_program(json.loads(line)["source"], m) for line in f if line.strip()][:args.count]
    else:
        progs = split("test", args.count, m)
    K = model.config.num_thoughts
    t0 = time.time()
    res: dict = {"test_programs": len(progs), "M": m}
    res["majority_baseline"] = Counter(p.answer for p in progs).most_common(1)[0][1] / len(progs)
    per_mode = {}
    for mode in ("none", "explicit", "latent"):
        per_mode[mode] = correctness(model, progs, mode)
        acc = sum(c for c, _ in per_mode[mode]) / len(progs)
        pos = sum(n for _, n in per_mode[mode]) / len(progs)
        res[mode] = {"accuracy": acc, "reasoning_positions": pos}
        print(f"{mode:9s} accuracy {acc:.3f}  reasoning positions {pos:.1f}", flush=True)
    res["accuracy_by_statements"] = {
        n: {mode: sum(c for p, (c, _) in zip(progs, per_mode[mode]) if len(p.steps) == n)
            / max(1, sum(len(p.steps) == n for p in progs)) for mode in per_mode}
        for n in range(2, 7)}
    gen = torch.Generator().manual_seed(args.seed)
    correct = [0] * len(progs)
    for _ in range(args.samples):
        for i in range(0, len(progs), 250):
            chunk = progs[i:i + 250]
            texts, _, _ = generate(model, chunk, "latent", args.temperature, gen)
            for j, (p, t) in enumerate(zip(chunk, texts)):
                correct[i + j] += parse_answer(t) == p.answer
    res["latent_pass_at_k"] = {str(k): sum(pass_at_k(args.samples, c, k) for c in correct) / len(progs)
                               for k in (1, 4, 16) if k <= args.samples}
    res["latent_temperature"] = args.temperature
    res["decoded_thought_step_accuracy"] = thought_step_accuracy(model, flow, vae, progs, K)
    res["seconds"] = time.time() - t0
    emit(res, args.json)


if __name__ == "__main__":
    main()
