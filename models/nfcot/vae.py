"""Step VAE: the CoT encoder (one trace step -> one thought slot e) and the thought decoder.

A step is (variable, value); slots past the program's last step hold the (<eot>, <eot>) step.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import tokenizer as tk
from .task import Program


def step_tokens(prog: Program, slots: int) -> list[list[int]]:
    out = [[tk.TOKEN_ID[s.var], tk.TOKEN_ID[str(s.value)]] for s in prog.steps]
    return out + [[tk.EOT, tk.EOT]] * (slots - len(out))


def decode_steps(pairs: list[list[int]]) -> str:
    lines = []
    for var, val in pairs:
        if var == tk.EOT or val == tk.EOT:
            break
        lines.append(f"{tk.VOCAB[var]} = {tk.VOCAB[val]}")
    return "\n".join(lines)


class StepVAE(nn.Module):
    def __init__(self, vocab: int, dim: int, width: int = 128):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.enc = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, 2 * dim))
        self.dec = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 2 * vocab))
        self.vocab = vocab

    def encode(self, steps):
        """steps [..., 2] -> posterior mean and log variance [..., dim]."""
        h = self.emb(steps).flatten(-2)
        mean, logvar = self.enc(h).chunk(2, -1)
        return mean, logvar.clamp(-8, 4)

    def decode_logits(self, e):
        """e [..., dim] -> logits [..., 2, vocab] for (variable, value)."""
        out = self.dec(e)
        return out.reshape(*out.shape[:-1], 2, self.vocab)

    def loss(self, steps, noise: float, beta: float):
        mean, logvar = self.encode(steps)
        z = mean + torch.randn_like(mean) * (torch.exp(0.5 * logvar) + noise)
        rec = F.cross_entropy(self.decode_logits(z).flatten(0, -2), steps.flatten())
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
        return rec + beta * kl, rec
