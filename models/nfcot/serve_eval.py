"""Accuracy per reasoning mode through a running server (what it serves, as clients see it):
latent greedy (T_z = 0), latent pass@1 at the default T_z (mean over samples), explicit, none, and
per program length; greedy text throughout. The RL trainer uses it on the validation split; the
before/after table of models/README.md comes from it on the test split.

  /usr/bin/python3 -m nfcot.serve_eval --server http://127.0.0.1:8000 --split test --count 1000 --samples 16
  /usr/bin/python3 -m nfcot.serve_eval --compare before.json after.json      (a before/after table)
"""
from __future__ import annotations

import argparse
import json
import time

from .generate import parse_answer
from .report import emit
from .task import split


def evaluate(server: Server, progs, seed: int, samples: int = 4, temperature: float = 0.9) -> dict:
    """Validation accuracy through the server (greedy text): latent at T_z = 0, latent pass@1 at
    the model's default T_z (mean over `samples` draws), explicit, none; and per program length."""
    res: dict = {}
    per_len: dict = {}
    for key, mode, n, tz in (("latent_greedy", "latent", 1, 0.0), ("latent_sampled", "latent", samples, None),
                             ("explicit", "explicit", 1, 0.0), ("none", "none", 1, 0.0)):
        jobs = [dict(source=p.source(), mode=mode, n=n, seed=seed + i, text_temperature=0.0, max_tokens=128,
                     latent_temperature=tz if tz is not None else temperature, vectors=False) for i, p in enumerate(progs)]
        outs = server.chat_many(jobs)
        right = [sum(parse_answer(c["message"]["content"]) == p.answer for c in o["choices"]) / n for p, o in zip(progs, outs)]
        res[key] = sum(right) / len(progs)
        for p, r in zip(progs, right):
            per_len.setdefault(str(len(p.steps)), {}).setdefault(key, []).append(r)
    res["by_statements"] = {k: {m: sum(v) / len(v) for m, v in d.items()} for k, d in sorted(per_len.items())}
    return res



MODES = (("none", "none"), ("explicit", "explicit"), ("latent_greedy", "latent, T_z = 0"), ("latent_sampled", "latent pass@1, T_z sampled"))


def compare(before: dict, after: dict) -> str:
    """A markdown table: each mode overall and per program length, before -> after."""
    lens = sorted(before["by_statements"])
    head = "| | " + " | ".join(["all"] + [f"{n} statements" for n in lens]) + " |"
    rows = [head, "|---" * (len(lens) + 2) + "|"]
    for key, label in MODES:
        cells = [f"{before[key]:.3f} -> {after[key]:.3f}"]
        cells += [f"{before['by_statements'][n][key]:.3f} -> {after['by_statements'][n][key]:.3f}" for n in lens]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    from .rl_client import Server
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE_JSON", "AFTER_JSON"), help="print the before/after table and exit")
    ap.add_argument("--server")
    ap.add_argument("--split", default="validation", choices=["validation", "test"])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=16, help="latent draws per program for pass@1 at --temperature")
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(*(json.load(open(p)) for p in args.compare)))
        return
    if not args.server:
        ap.error("--server is required")
    server = Server(args.server)
    t0 = time.time()
    res = evaluate(server, split(args.split, args.count), args.seed, args.samples, args.temperature)
    version = server.chat(source="a = 1\nprint(a)", mode="none", n=1, seed=0, latent_temperature=0.0,
                          text_temperature=0.0, max_tokens=2, vectors=False)["weights_version"]
    res = {"split": args.split, "count": args.count, "samples": args.samples, "latent_temperature": args.temperature,
           "weights_version": version, **res, "seconds": time.time() - t0}
    emit(res, args.json)


if __name__ == "__main__":
    main()
