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
Then counterfactual traces (train.counterfactual_rows: one thought holds another value, the later
ones follow from it): at each later slot whose value the change altered, does the NF head's mean
decode to the counterfactual step (it computes from its thoughts) or to the program's own (it
computes from the prompt)?
With a checkpoint trained with --operands, also the training-only operand head's look-ups with the
true thoughts: per slot, how often it names statement t's first and second operand values.
"""
from __future__ import annotations

import random

import torch

from . import tokenizer as tk
from .data import build_batch
from .probe import run_probe_cli
from .task import DEFAULT_M, Program
from .train import OPERAND_LAYER, counterfactual_rows, operand_logits
from .vae import step_tokens


@torch.no_grad()
def thought_probe(model, flow, vae, progs: list[Program], m: int = DEFAULT_M,
                  operand_head: torch.nn.Module | None = None, operand_layer: int = OPERAND_LAYER) -> dict:
    K, D = model.config.num_thoughts, model.config.thought_dim
    b = build_batch(progs, ["latent"] * len(progs), K)
    u, _ = flow(vae.encode(b["steps"])[0])
    rows = torch.arange(len(progs))[:, None]
    slots = torch.arange(K)[None]
    answer_at = b["bot_index"] + K
    answers = torch.tensor([tk.TOKEN_ID[str(p.answer)] for p in progs])
    real = torch.tensor([[t < len(p.steps) for t in range(K)] for p in progs])

    pred_pos = b["bot_index"][:, None] + slots

    def run(thoughts, taps=None):
        th = torch.zeros(*b["ids"].shape, D)
        th[rows, b["bot_index"][:, None] + 1 + slots] = thoughts
        h, _ = model(b["ids"], th, b["is_thought"], b["positions"], b["key_mask"], taps=taps)
        logits, mu, _ = model.heads(h)
        return logits[torch.arange(len(progs)), answer_at].argmax(-1), mu[rows, pred_pos]

    def decoded_at(uu, mu, t):
        """The step slot t's mean decodes to, with uu at the other slots."""
        uu = uu.clone()
        uu[:, t] = mu[:, t]
        return vae.decode_logits(flow.inverse(uu)).argmax(-1)[:, t]

    def next_thought_accuracy(mu) -> list[float | None]:
        out = []
        for t in range(K):
            ok = (decoded_at(u, mu, t) == b["steps"][:, t]).all(-1)
            n = int(real[:, t].sum())
            out.append(round(float(ok[real[:, t]].float().mean()), 3) if n else None)
        return out

    taps: list[torch.Tensor] = []  # each layer's output, from the run with the program's own thoughts
    own_answer, own_mu = run(u, taps)
    lookups = None
    if operand_head is not None:
        named = operand_logits(operand_head, taps[operand_layer - 1][rows, pred_pos]).argmax(-1)
        target = b["operands"]
        lookups = []
        for t in range(K):
            scored = target[:, t, 0] != -100
            lookups.append([round(float((named[:, t, i] == target[:, t, i])[scored].float().mean()), 3)
                            for i in range(2)] if bool(scored.any()) else None)
    other_answer, _ = run(u.roll(1, 0))
    other_mu = torch.stack([run(torch.cat([u.roll(1, 0)[:, :t], u[:, t:]], 1))[1][:, t] for t in range(K)], 1)
    cf_progs, cf_slots = counterfactual_rows(progs, ["latent"] * len(progs), 1.0, random.Random(0), m)
    cf_steps = torch.tensor([step_tokens(p, K) for p in cf_progs])
    cf_u, _ = flow(vae.encode(cf_steps)[0])
    _, cf_mu = run(cf_u)
    follows = keeps = altered = 0
    for t in range(1, K):
        mask = torch.tensor([j >= 0 and j < t < len(p.steps) for j, p in zip(cf_slots, progs)])
        mask &= cf_steps[:, t, 1] != b["steps"][:, t, 1]
        got = decoded_at(cf_u, cf_mu, t)
        follows += int(((got == cf_steps[:, t]).all(-1) & mask).sum())
        keeps += int(((got == b["steps"][:, t]).all(-1) & mask).sum())
        altered += int(mask.sum())
    return {
        "answer_accuracy_own_thoughts": round(float((own_answer == answers).float().mean()), 3),
        "answer_accuracy_other_thoughts": round(float((other_answer == answers).float().mean()), 3),
        "next_thought_accuracy_by_slot": next_thought_accuracy(own_mu),
        "next_thought_accuracy_by_slot_other_earlier_thoughts": next_thought_accuracy(other_mu),
        "steps_by_slot": [int(real[:, t].sum()) for t in range(K)],
        "counterfactual_altered_thoughts": altered,
        "counterfactual_thought_follows_earlier_thoughts": round(follows / altered, 3) if altered else None,
        "counterfactual_thought_follows_prompt": round(keeps / altered, 3) if altered else None,
        **({"operand_head_lookup_accuracy_by_slot": lookups} if lookups is not None else {}),
    }


def checkpoint_operand_head(ck: dict) -> tuple[torch.nn.Module | None, int]:
    """The training-only operand head saved with a checkpoint trained with --operands, and its layer."""
    args = ck.get("args", {})
    if not args.get("operands") or "operands" not in ck:
        return None, OPERAND_LAYER
    vocab, hidden = ck["config"]["vocab_size"], ck["config"]["hidden_size"]
    head = torch.nn.Linear(hidden, 2 * vocab)
    head.load_state_dict(ck["operands"])
    return head.eval(), int(args.get("operand_layer", OPERAND_LAYER))


def main(argv=None) -> None:
    def probe_checkpoint(model, flow, vae, progs, ck):
        head, layer = checkpoint_operand_head(ck)
        return thought_probe(model, flow, vae, progs, ck["m"], head, layer)
    run_probe_cli(__doc__, argv, probe_checkpoint)


if __name__ == "__main__":
    main()
