"""Stand-in models with known behaviour for the probes: the probes' bookkeeping (which position
reads what, what counts as right) is then checked against counts worked out by hand."""
from __future__ import annotations

import torch

from nfcot import tokenizer as tk
from nfcot.model import ModelConfig

NUMBERS = torch.tensor([tk.VOCAB[i].lstrip("-").isdigit() for i in range(len(tk.VOCAB))])


class _Fake(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = ModelConfig(vocab_size=len(tk.VOCAB), hidden_size=32, num_layers=1, num_heads=4,
                                  num_kv_heads=2, intermediate_size=64)

    def heads(self, h):
        V = self.config.vocab_size
        return h[..., :V], h[..., V:], torch.zeros_like(h[..., V:])


class LatestNumber(_Fake):
    """Guesses, at every position, the latest number token at or before it (a model that has not
    learned to match names and writes a recent value)."""

    def forward(self, ids, thoughts, is_thought, positions, key_mask=None, past=None, taps=None):
        B, S = ids.shape
        V, D = self.config.vocab_size, self.config.thought_dim
        h = torch.zeros(B, S, V + D)
        for b in range(B):
            last = tk.UNK
            for s in range(S):
                if NUMBERS[ids[b, s]]:
                    last = int(ids[b, s])
                h[b, s, last] = 1.0
        return h, None


class Peek(_Fake):
    """Knows what comes next: the logits name the next input token and the NF mean is the thought fed
    at the next position (teacher forcing makes both the truth). It never reads earlier thoughts."""

    def forward(self, ids, thoughts, is_thought, positions, key_mask=None, past=None, taps=None):
        B, S = ids.shape
        V = self.config.vocab_size
        nxt = torch.cat([ids[:, 1:], torch.full((B, 1), tk.PAD)], 1)
        mu = torch.cat([thoughts[:, 1:], torch.zeros_like(thoughts[:, :1])], 1)
        h = torch.cat([torch.nn.functional.one_hot(nxt, V).float(), mu], -1)
        if taps is not None:
            taps.append(h)
        return h, None
