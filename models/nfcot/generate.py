"""Batched decoding with a KV cache in PyTorch: greedy text, sampled or mean thoughts."""
from __future__ import annotations

import torch

from . import tokenizer as tk
from .model import NFCoTModel
from .task import Program


@torch.no_grad()
def generate(model: NFCoTModel, progs: list[Program], mode: str, latent_temperature: float = 0.0,
             generator: torch.Generator | None = None, max_new: int = 96):
    """Returns (texts, thoughts [B, K, D] or None, number of generated text tokens per row). Runs on
    the model's device; thought noise is drawn on the CPU (from `generator`), as on any device."""
    c = model.config
    dev = next(model.parameters()).device
    prompts = [tk.prompt_ids(p.source(), mode) for p in progs]
    B = len(prompts)
    P = max(map(len, prompts))
    ids = torch.full((B, P), tk.PAD, dtype=torch.long)
    mask = torch.zeros(B, P, dtype=torch.bool)
    pos = torch.zeros(B, P, dtype=torch.long)
    for r, pr in enumerate(prompts):
        ids[r, P - len(pr):] = torch.tensor(pr)  # left padding
        mask[r, P - len(pr):] = True
        pos[r, P - len(pr):] = torch.arange(len(pr))
    ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
    lens = torch.tensor([len(p) for p in prompts], device=dev)
    zeros_t = torch.zeros(B, P, c.thought_dim, device=dev)
    h, past = model(ids, zeros_t, torch.zeros(B, P, device=dev), pos, mask)
    h = h[:, -1]
    next_pos = lens.clone()
    thoughts = None

    def step(tok, thought, is_th):
        nonlocal past, mask, next_pos
        mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.bool, device=dev)], 1)
        hh, past = model(tok[:, None], thought[:, None], is_th[:, None], next_pos[:, None], mask, past)
        next_pos = next_pos + 1
        return hh[:, 0]

    if mode == "latent":
        thoughts = torch.zeros(B, c.num_thoughts, c.thought_dim, device=dev)
        for t in range(c.num_thoughts):
            _, mu, ls = model.heads(h)
            z = torch.randn(mu.shape, generator=generator).to(dev) if latent_temperature > 0 else torch.zeros_like(mu)
            u = mu + torch.exp(ls) * latent_temperature * z
            thoughts[:, t] = u
            h = step(torch.full((B,), tk.PAD, device=dev), u, torch.ones(B, device=dev))
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_new):
        logits, _, _ = model.heads(h)
        logits[:, tk.BOT] = float("-inf")  # a latent span inside text is not part of this task
        tok = logits.argmax(-1)
        for r, t in enumerate(tok.tolist()):
            if not done[r]:
                if t == tk.EOS:
                    done[r] = True
                else:
                    out[r].append(t)
        if bool(done.all()):
            break
        h = step(tok, torch.zeros(B, c.thought_dim, device=dev), torch.zeros(B, device=dev))
    return [tk.decode(o) for o in out], thoughts, [len(o) for o in out]


def parse_answer(text: str) -> int | None:
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    if not lines:
        return None
    try:
        return int(lines[-1])
    except ValueError:
        return None


def correctness(model, progs, mode, latent_temperature=0.0, generator=None, batch=250):
    """Per program: (answer right, reasoning positions used)."""
    out = []
    for i in range(0, len(progs), batch):
        chunk = progs[i:i + batch]
        texts, _, ntok = generate(model, chunk, mode, latent_temperature, generator)
        for p, t, n in zip(chunk, texts, ntok):
            if mode == "explicit":
                pos = max(n - 2, 0)  # trace tokens: all but the newline before the answer and the answer
            elif mode == "latent":
                pos = model.config.num_thoughts
            else:
                pos = 0
            out.append((parse_answer(t) == p.answer, pos))
    return out


def accuracy(model, progs, mode, latent_temperature=0.0, generator=None, batch=250):
    res = correctness(model, progs, mode, latent_temperature, generator, batch)
    return sum(c for c, _ in res) / len(progs), sum(n for _, n in res) / len(progs)
