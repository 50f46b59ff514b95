"""Teacher-forced log-probs of latent trajectories: the PyTorch side of the RL loop.

A trajectory is [prompt ids ending in <bot>] [u_1 .. u_K] [answer token ids] (EOS excluded: chat
completions do not return the stop token). For each one this computes, in one dense forward:
  - thought_lp1[k]: log N(u_k; mu_k, sigma_k^2), the model's density (T_z = 1), what the server
    returns as thoughts.log_probs;
  - thought_lpT[k]: log N(u_k; mu_k, (T_z sigma_k)^2), the density the thoughts were drawn from
    (thoughts.behaviour_log_probs), the policy's log-prob for the importance ratio;
  - answer token log-probs (log-softmax of the raw logits, as the server reports them).
Densities are summed in float64, as the server does.

  /usr/bin/python3 -m nfcot.rl_score --model-dir nfcot-trace-small --in rollouts.json --out scores.json
"""
from __future__ import annotations

import argparse
import base64
import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import tokenizer as tk
from .model import NFCoTModel

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class Trajectory:
    prompt_ids: list[int]
    thoughts: np.ndarray  # [K, D] float32, the exact vectors the server drew
    answer_ids: list[int]


def decode_vector(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4").astype(np.float32)


def gaussian_lp(u: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Per thought: sum_d -0.5 ((u - mu) / sigma)^2 - log sigma - 0.5 log 2 pi, in float64."""
    u, mu, ls = u.double(), mu.double(), log_sigma.double()
    z = (u - mu) * torch.exp(-ls)
    return (-0.5 * z * z - ls - HALF_LOG_2PI).sum(-1)


def score(model: NFCoTModel, trajs: list[Trajectory], temperature: float, device: str = "cpu") -> dict:
    """Tensors (on `device`, float64 densities, differentiable w.r.t. the model):
    thought_lp1, thought_lpT [N, K]; answer_lp [N] (sum over answer tokens); token_lp [M] and
    token_owner [M] (every answer token's log-prob and its trajectory)."""
    c = model.config
    K, D = c.num_thoughts, c.thought_dim
    N = len(trajs)
    lens = [len(t.prompt_ids) + K + len(t.answer_ids) for t in trajs]
    S = max(lens)
    ids = torch.full((N, S), tk.PAD, dtype=torch.long)
    th = torch.zeros(N, S, D)
    is_th = torch.zeros(N, S)
    mask = torch.zeros(N, S, dtype=torch.bool)
    th_pred = torch.zeros(N, K, dtype=torch.long)   # position whose head predicts thought k
    tok_rows, tok_pos, tok_ids = [], [], []
    for i, t in enumerate(trajs):
        P = len(t.prompt_ids)
        if t.prompt_ids[-1] != tk.BOT:
            raise ValueError(f"trajectory {i}: the prompt must end in <bot>")
        if t.thoughts.shape != (K, D):
            raise ValueError(f"trajectory {i}: thoughts {t.thoughts.shape}, the model takes {(K, D)}")
        ids[i, :P] = torch.tensor(t.prompt_ids)
        th[i, P:P + K] = torch.from_numpy(np.ascontiguousarray(t.thoughts))
        is_th[i, P:P + K] = 1.0
        ids[i, P + K:lens[i]] = torch.tensor(t.answer_ids, dtype=torch.long)
        mask[i, :lens[i]] = True
        th_pred[i] = torch.arange(P - 1, P - 1 + K)
        for j, a in enumerate(t.answer_ids):
            tok_rows.append(i)
            tok_pos.append(P + K + j - 1)
            tok_ids.append(a)
    pos = torch.arange(S).repeat(N, 1)
    ids, th, is_th, mask, pos, th_pred = (x.to(device) for x in (ids, th, is_th, mask, pos, th_pred))
    h, _ = model(ids, th, is_th, pos, mask)
    rows = torch.arange(N, device=device)[:, None].expand(N, K)
    _, mu, ls = model.heads(h[rows, th_pred])                     # [N, K, D]
    u = th[rows, th_pred + 1]
    lp1 = gaussian_lp(u, mu, ls)
    lpT = gaussian_lp(u, mu, ls + math.log(temperature)) if temperature > 0 else torch.full_like(lp1, float("nan"))
    owner = torch.tensor(tok_rows, dtype=torch.long, device=device)
    if tok_rows:
        logits, _, _ = model.heads(h[owner, torch.tensor(tok_pos, device=device)])
        token_lp = torch.log_softmax(logits.double(), -1).gather(-1, torch.tensor(tok_ids, device=device)[:, None])[:, 0]
    else:
        token_lp = torch.zeros(0, dtype=torch.float64, device=device)
    answer_lp = torch.zeros(N, dtype=torch.float64, device=device).index_add(0, owner, token_lp)
    return {"thought_lp1": lp1, "thought_lpT": lpT, "answer_lp": answer_lp, "token_lp": token_lp, "token_owner": owner}


def main(argv=None) -> None:
    """Reads {temperature, trajectories: [{prompt_ids, thoughts: [base64], answer_ids}]}; writes
    the log-probs per trajectory, and with --flow the flow log-det, as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from .onnx_weights import load_model_dir
    torch.set_num_threads(1)
    model, flow, _, _ = load_model_dir(args.model_dir)
    req = json.load(open(args.inp))
    trajs = [Trajectory(t["prompt_ids"], np.stack([decode_vector(v) for v in t["thoughts"]]), t["answer_ids"])
             for t in req["trajectories"]]
    with torch.no_grad():
        r = score(model, trajs, req["temperature"])
        u = torch.from_numpy(np.stack([t.thoughts for t in trajs]))
        _, logdet = flow(flow.inverse(u))
    out = [{"thought_log_probs": r["thought_lp1"][i].tolist(),
            "behaviour_log_probs": r["thought_lpT"][i].tolist(),
            "answer_logprobs": r["token_lp"][r["token_owner"] == i].tolist(),
            "flow_log_det": float(logdet[i])} for i in range(len(trajs))]
    json.dump({"trajectories": out}, open(args.out, "w"))


if __name__ == "__main__":
    main()
