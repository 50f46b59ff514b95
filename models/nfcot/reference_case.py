"""A PyTorch reference trajectory for the shipped graphs: the model directory's weights read back
into PyTorch (onnx_weights), fixed test-split prompts decoded greedily (latent thoughts at T_z = 0,
u = mu), and the dense forward's outputs at every position. test/shipped-parity.test.ts replays the
same inputs through the serving Runner (onnxruntime-node, paged KV cache, chunked prefill,
one-position decode steps) and compares.

  /usr/bin/python3 -m nfcot.reference_case --model-dir nfcot-trace-small --out case.json
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from . import tokenizer as tk
from .onnx_weights import load_model_dir
from .parity import b64, flow_case

# (mode, statements): the first test-split program of that many statements is decoded in that mode.
ROWS = (("latent", 6), ("explicit", 4), ("none", 3))
MAX_NEW = 64


@torch.no_grad()
def dense(model, ids: list[int], thoughts: list[list[float] | None]):
    """Outputs at every position of one sequence, from one dense forward (no cache)."""
    D = model.config.thought_dim
    T = len(ids)
    th = torch.tensor([t if t is not None else [0.0] * D for t in thoughts], dtype=torch.float32)[None]
    ist = torch.tensor([[1.0 if t is not None else 0.0 for t in thoughts]])
    h, _ = model(torch.tensor([ids]), th, ist, torch.arange(T)[None])
    return model.heads(h[0])


@torch.no_grad()
def trajectory(model, source: str, mode: str):
    prompt = tk.prompt_ids(source, mode)
    ids, thoughts = list(prompt), [None] * len(prompt)
    K = model.config.num_thoughts
    while len(ids) - len(prompt) < MAX_NEW:
        logits, mu, _ = dense(model, ids, thoughts)
        if mode == "latent" and sum(t is not None for t in thoughts) < K:
            ids.append(tk.PAD)
            thoughts.append(mu[-1].tolist())  # T_z = 0: u = mu, exactly as float32
            continue
        nxt = logits[-1].clone()
        nxt[tk.BOT] = float("-inf")
        tok = int(nxt.argmax())
        ids.append(tok)
        thoughts.append(None)
        if tok == tk.EOS:
            break
    logits, mu, ls = dense(model, ids, thoughts)
    return prompt, ids, thoughts, logits, mu, ls


def make(model_dir: str, test_split: str) -> dict:
    model, flow, vae, manifest = load_model_dir(model_dir)
    progs = [json.loads(l) for l in open(test_split)]
    rows = []
    for mode, n in ROWS:
        p = next(p for p in progs if p["n"] == n)
        prompt, ids, thoughts, logits, mu, ls = trajectory(model, p["source"], mode)
        th = [t for t in thoughts if t is not None]
        row = {"mode": mode, "source": p["source"], "answer": p["answer"], "prompt_len": len(prompt), "ids": ids,
               "is_thought": [t is not None for t in thoughts],
               "thoughts": b64(torch.tensor(th if th else [[0.0] * model.config.thought_dim]), "float32"),
               "text": tk.decode([i for i, t in zip(ids[len(prompt):], thoughts[len(prompt):]) if t is None and i != tk.EOS]),
               "logits": b64(logits, "float32"), "mu": b64(mu, "float32"), "log_sigma": b64(ls, "float32")}
        if th:
            with torch.no_grad():
                steps = vae.decode_logits(flow.inverse(torch.tensor(th)[None])).argmax(-1)[0]
            row["decoded_steps"] = steps.tolist()
        rows.append(row)
    c = model.config
    return {"model": manifest["name"], "rows": rows, "flow": flow_case(flow, vae, c.num_thoughts, c.thought_dim, 0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--test-split", default=os.path.join(os.path.dirname(__file__), "..", "data", "test.jsonl"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    case = make(args.model_dir, args.test_split)
    with open(args.out, "w") as f:
        json.dump(case, f)
    for r in case["rows"]:
        print(f"{r['mode']:9s} {len(r['ids']) - r['prompt_len']} positions after the prompt: {r['text']!r}")


if __name__ == "__main__":
    main()
