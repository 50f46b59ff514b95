"""Teacher-forced probe of the explicit trace: where do the model's next-token guesses go wrong?

  /usr/bin/python3 -m nfcot.probe --checkpoint runs/x/ckpt.pt   (from models/)

Feeds the true trace and scores the model's greedy guess at two kinds of positions: the operand
values it must look up (`5` in `c = a + 2 = 5 + 2`), grouped by how recently the variable was
assigned (rank 0 = the latest assignment before this statement), and the results of the
arithmetic (`7` in `c = 7`). For wrong look-ups it says whose value the model wrote instead, by
the same rank: a model that has not learned to match names writes a recent value.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

import torch

from . import tokenizer as tk
from .data import build_batch, continuation
from .export import load_checkpoint
from .task import Program, split


def _statements(prog: Program):
    """(statement index, step, its first index in continuation(prog, "explicit")) of each
    computed statement: `v = x op y = X op Y \n v = V \n` (14 tokens) after `v = c \n` (4)."""
    at = 0
    for k, s in enumerate(prog.steps):
        if s.shown:
            yield k, s, at
        at += 14 if s.shown else 4


def lookups(prog: Program) -> list[tuple[int, int, int, int]]:
    """(index in the continuation, statement, rank of the variable read, its value) for every
    operand read from a variable."""
    names = [s.var for s in prog.steps]
    out = []
    for k, s, at in _statements(prog):
        x, _, y = s.expr.split(" ")
        for name, off in ((x, 6), (y, 8)):
            if name in names:
                j = names.index(name)
                out.append((at + off, k, k - 1 - j, prog.steps[j].value))
    return out


def results(prog: Program) -> list[tuple[int, int]]:
    """(index in the continuation, value) of each computed statement's result."""
    return [(at + 12, s.value) for _, s, at in _statements(prog)]


@torch.no_grad()
def probe(model, progs: list[Program], batch: int = 100) -> dict:
    by_rank: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    arith = [0, 0]
    wrong_to = Counter()
    d = model.config.thought_dim
    for i in range(0, len(progs), batch):
        chunk = progs[i:i + batch]
        b = build_batch(chunk, ["explicit"] * len(chunk), model.config.num_thoughts)
        h, _ = model(b["ids"], torch.zeros(*b["ids"].shape, d), b["is_thought"], b["positions"], b["key_mask"])
        guess = model.heads(h)[0].argmax(-1)
        for r, p in enumerate(chunk):
            start = len(tk.prompt_ids(p.source(), "explicit"))
            values = [s.value for s in p.steps]
            cont = continuation(p, "explicit")
            for idx, k, rank, value in lookups(p):
                assert cont[idx] == tk.TOKEN_ID[str(value)]
                g = tk.VOCAB[int(guess[r, start + idx - 1])]
                ok = g == str(value)
                by_rank[min(rank, 3)][0] += ok
                by_rank[min(rank, 3)][1] += 1
                if not ok:
                    ranks = [k - 1 - j for j in range(k) if str(values[j]) == g]
                    wrong_to[f"rank {min(ranks)}" if ranks else "no earlier value"] += 1
            for idx, value in results(p):
                arith[0] += tk.VOCAB[int(guess[r, start + idx - 1])] == str(value)
                arith[1] += 1
    return {
        "lookup_accuracy_by_rank": {(f"{k}" if k < 3 else "3+"): round(a / n, 3) for k, (a, n) in sorted(by_rank.items())},
        "lookups_by_rank": {(f"{k}" if k < 3 else "3+"): n for k, (_, n) in sorted(by_rank.items())},
        "result_accuracy": round(arith[0] / arith[1], 3),
        "wrong_lookups_wrote": dict(wrong_to.most_common()),
    }


def run_probe_cli(doc: str, argv, fn) -> None:
    """The probes' command line: fn(model, flow, vae, validation programs, checkpoint) -> dict,
    printed as JSON."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--count", type=int, default=300, help="validation programs")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, flow, vae, ck = load_checkpoint(args.checkpoint)
    print(json.dumps(fn(model, flow, vae, split("validation", args.count, ck["m"]), ck), indent=2))


def main(argv=None) -> None:
    run_probe_cli(__doc__, argv, lambda model, _flow, _vae, progs, _ck: probe(model, progs))


if __name__ == "__main__":
    main()
