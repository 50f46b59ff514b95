"""Teacher-forced probe of latent mode: does the model read its thoughts?

  /usr/bin/python3 -m nfcot.thought_probe --checkpoint runs/x/ckpt.pt   (from models/)

Feeds the true thoughts (the VAE's posterior means of the trace steps, through the flow) and
scores two things, each twice: once with the program's own earlier thoughts, once with the
thoughts of another program (the next one in the list) in their place.
- The answer (greedy) at the last thought. A model that reads its thoughts gets it right with its
  own and wrong with another program's; one that answers from the prompt alone scores the same.
- Each next thought: the NF head's mean at slot t, decoded through the flow's inverse and the VAE
  decoder with the true thoughts everywhere else, must give step t's (variable, value). Slot 0 is
  a copy of the program's first line; slots past the program's end (the <eot> step) are left out.
"""
from __future__ import annotations

import torch

from . import tokenizer as tk
from .data import build_batch
from .probe import run_probe_cli
from .task import Program


@torch.no_grad()
def thought_probe(model, flow, vae, progs: list[Program]) -> dict:
    K, D = model.config.num_thoughts, model.config.thought_dim
    b = build_batch(progs, ["latent"] * len(progs), K)
    u, _ = flow(vae.encode(b["steps"])[0])
    rows = torch.arange(len(progs))[:, None]
    slots = torch.arange(K)[None]
    answer_at = b["bot_index"] + K
    answers = torch.tensor([tk.TOKEN_ID[str(p.answer)] for p in progs])
    real = torch.tensor([[t < len(p.steps) for t in range(K)] for p in progs])

    def run(thoughts):
        th = torch.zeros(*b["ids"].shape, D)
        th[rows, b["bot_index"][:, None] + 1 + slots] = thoughts
        h, _ = model(b["ids"], th, b["is_thought"], b["positions"], b["key_mask"])
        logits, mu, _ = model.heads(h)
        return logits[torch.arange(len(progs)), answer_at].argmax(-1), mu[rows, b["bot_index"][:, None] + slots]

    def next_thought_accuracy(mu) -> list[float | None]:
        out = []
        for t in range(K):
            uu = u.clone()
            uu[:, t] = mu[:, t]
            ok = (vae.decode_logits(flow.inverse(uu)).argmax(-1)[:, t] == b["steps"][:, t]).all(-1)
            n = int(real[:, t].sum())
            out.append(round(float(ok[real[:, t]].float().mean()), 3) if n else None)
        return out

    own_answer, own_mu = run(u)
    other_answer, _ = run(u.roll(1, 0))
    other_mu = torch.stack([run(torch.cat([u.roll(1, 0)[:, :t], u[:, t:]], 1))[1][:, t] for t in range(K)], 1)
    return {
        "answer_accuracy_own_thoughts": round(float((own_answer == answers).float().mean()), 3),
        "answer_accuracy_other_thoughts": round(float((other_answer == answers).float().mean()), 3),
        "next_thought_accuracy_by_slot": next_thought_accuracy(own_mu),
        "next_thought_accuracy_by_slot_other_earlier_thoughts": next_thought_accuracy(other_mu),
        "steps_by_slot": [int(real[:, t].sum()) for t in range(K)],
    }


def main(argv=None) -> None:
    run_probe_cli(__doc__, argv, thought_probe)


if __name__ == "__main__":
    main()
