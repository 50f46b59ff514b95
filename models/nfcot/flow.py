"""TARFlow-style shallow flow over the K thought slots: e (distilled targets) <-> u (flow space).

Each MetaBlock is affine and causal over slots: the shift b_t and log-scale a_t of slot t come
from a small causal transformer over slots < t (slot 0 is left as is). Blocks alternate the slot
order. Likelihood direction: z_t = (x_t - b_t) * exp(-a_t), log det = -sum(a).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class MetaBlock(nn.Module):
    def __init__(self, dim: int, slots: int, width: int = 64, flip: bool = False):
        super().__init__()
        self.flip = flip
        self.inp = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.zeros(slots, width))
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.out = nn.Linear(width, 2 * dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        mask = torch.ones(slots, slots, dtype=torch.bool).triu(1)  # True = may not attend
        self.register_buffer("mask", mask, persistent=False)

    def params(self, x):
        """Shift and log-scale for every slot from the slots before it. x [B, K, D]."""
        B, K, D = x.shape
        # Shift right by one slot so slot t sees x_<t only; slot 0 sees zeros and gets a, b = 0.
        h = self.inp(torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)) + self.pos[:K]
        h = h + self.attn(h, h, h, attn_mask=self.mask[:K, :K], need_weights=False)[0]
        h = h + self.mlp(h)
        a, b = self.out(h).chunk(2, -1)
        a = torch.tanh(a) * 2.0
        keep = torch.ones(1, K, 1, dtype=x.dtype, device=x.device)
        keep[:, 0] = 0.0
        return a * keep, b * keep

    def forward(self, x):
        """x -> z, log det [B]."""
        if self.flip:
            x = x.flip(1)
        a, b = self.params(x)
        z = (x - b) * torch.exp(-a)
        if self.flip:
            z = z.flip(1)
        return z, -a.sum((1, 2))

    def inverse(self, z):
        """z -> x, slot by slot (the params of slot t need x_<t)."""
        if self.flip:
            z = z.flip(1)
        K = z.shape[1]
        x = z.clone()
        for t in range(1, K):
            a, b = self.params(x)
            x_t = z[:, t] * torch.exp(a[:, t]) + b[:, t]
            x = torch.cat([x[:, :t], x_t[:, None], x[:, t + 1:]], 1)
        if self.flip:
            x = x.flip(1)
        return x


class ShallowFlow(nn.Module):
    def __init__(self, dim: int, slots: int, blocks: int = 2, width: int = 64):
        super().__init__()
        if blocks < 2:
            raise ValueError("the shallow flow needs at least 2 MetaBlocks")
        self.blocks = nn.ModuleList([MetaBlock(dim, slots, width, flip=bool(i % 2)) for i in range(blocks)])

    def forward(self, e):
        """e -> u, log |det du/de| [B]."""
        logdet = torch.zeros(e.shape[0], device=e.device)
        x = e
        for blk in self.blocks:
            x, ld = blk(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, u):
        x = u
        for blk in reversed(self.blocks):
            x = blk.inverse(x)
        return x
