"""The last stage of a recipe: the chosen model directory, with its evaluation and provenance in
the manifest, written where the server loads it.

The manifest's `evaluation` block is what the READMEs quote (test/readme-figures.test.ts) and what
the shipped-model regression test holds the engine to: `accuracy` from nfcot.evaluate on the test
split (PyTorch, greedy text, thoughts at T_z = 0), `serve_eval` from nfcot.serve_eval through the
server (latent pass@1 at the default T_z, per program length). `recipe` is the runner's provenance
(recipe, every stage's flags, the code's commit); `rl` says which update was chosen and why.

  /usr/bin/python3 -m nfcot.ship --model runs/x/rl/best --evaluate runs/x/evaluate.json \
      --serve-eval runs/x/test-after.json --rl-history runs/x/rl/history.json --extra PROVENANCE --out DIR
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

from .report import directory_written_whole, write_json

EVALUATE_COMMAND = "/usr/bin/python3 -m nfcot.evaluate --model-dir nfcot-trace-small --samples 0"
SERVE_EVAL_COMMAND = "python -m nfcot.serve_eval --server URL --split test --count 1000 --samples 16 (greedy text)"


def evaluation_block(ev: dict, se: dict) -> dict:
    if se.get("split") != "test" or ev.get("test_programs") != se.get("count"):
        raise SystemExit(f"the evaluations disagree: nfcot.evaluate ran {ev.get('test_programs')} test programs, "
                         f"serve_eval {se.get('count')} of the {se.get('split')} split")
    return {
        "split": "test", "programs": ev["test_programs"], "M": ev["M"],
        "accuracy": {m: ev[m]["accuracy"] for m in ("none", "explicit", "latent")},
        "decoding": "greedy text; latent thoughts at T_z = 0 (u = mu)",
        "command": EVALUATE_COMMAND,
        "serve_eval": {
            "command": SERVE_EVAL_COMMAND,
            "latent_temperature": se["latent_temperature"],
            "latent_pass_at_1": se["latent_sampled"],
            "by_statements": {n: {"none": r["none"], "explicit": r["explicit"], "latent_greedy": r["latent_greedy"],
                                  "latent_pass_at_1": r["latent_sampled"]} for n, r in se["by_statements"].items()},
        },
    }


def rl_block(history: dict) -> dict:
    """The chosen update and the validation it was chosen on (never the test split)."""
    best = history["best"]
    at = [e for e in history["evals"] if e["step"] == best["step"]]
    first = history["evals"][0]
    return {"updates": len(history["history"]), "chosen_update": best["step"], "chosen_on": "validation latent T_z = 0",
            "validation": {"before": {k: first[k] for k in ("latent_greedy", "latent_sampled", "explicit", "none")},
                           "chosen": {k: at[0][k] for k in ("latent_greedy", "latent_sampled", "explicit", "none")}}}


def ship(model: str, ev: dict, se: dict, history: dict | None, extra: dict, out: str) -> dict:
    evaluation = evaluation_block(ev, se)  # refused before anything is written
    with directory_written_whole(out) as tmp:
        shutil.copytree(model, tmp)
        path = os.path.join(tmp, "manifest.json")
        manifest = json.load(open(path))
        manifest.pop("rl", None)  # the trainer's per-update record names local paths; rl_block replaces it
        manifest["evaluation"] = evaluation
        if history is not None:
            manifest["rl"] = rl_block(history)
        manifest.update(extra)
        write_json(path, manifest)
    return manifest


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--evaluate", required=True, help="nfcot.evaluate --json output on the test split")
    ap.add_argument("--serve-eval", required=True, help="nfcot.serve_eval --json output on the test split")
    ap.add_argument("--rl-history", help="nfcot.rl's history.json, when the model came from RL")
    ap.add_argument("--extra", help="JSON merged into the manifest (the recipe runner's {provenance})")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    m = ship(args.model, json.load(open(args.evaluate)), json.load(open(args.serve_eval)),
             json.load(open(args.rl_history)) if args.rl_history else None,
             json.load(open(args.extra)) if args.extra else {}, args.out)
    a = m["evaluation"]["accuracy"]
    print(f"shipped {args.model} -> {args.out}: test none {a['none']} explicit {a['explicit']} latent {a['latent']}, "
          f"latent pass@1 {m['evaluation']['serve_eval']['latent_pass_at_1']}", flush=True)


if __name__ == "__main__":
    main()
