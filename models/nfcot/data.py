"""Batches for the three reasoning modes in one causal stream."""
from __future__ import annotations

import torch

from . import tokenizer as tk
from .task import Program
from .vae import step_tokens

MODES = ("none", "explicit", "latent")


def continuation(prog: Program, mode: str) -> list[int]:
    """Text after the prompt, thought slots as <pad> placeholders (their inputs are vectors)."""
    ans = tk.TOKEN_ID[str(prog.answer)]
    if mode == "none":
        return [ans, tk.EOS]
    if mode == "explicit":
        return tk.encode(prog.trace()) + [tk.NEWLINE, ans, tk.EOS]
    raise ValueError(mode)


def operand_tokens(prog: Program, slots: int) -> list[list[int]]:
    """Per slot, the token ids of its statement's two operand values (`5`, `3` in `b = a * 3`, a = 5);
    -100 (not scored) for a constant statement and past the program's end."""
    out = []
    for s in prog.steps:
        parts = s.shown.split(" ")
        out.append([tk.TOKEN_ID[parts[0]], tk.TOKEN_ID[parts[2]]] if s.shown else [-100, -100])
    return out + [[-100, -100]] * (slots - len(out))


def build_batch(progs: list[Program], modes: list[str], K: int) -> dict:
    rows, lat = [], []
    for p, m in zip(progs, modes):
        prompt = tk.prompt_ids(p.source(), m)
        if m == "latent":
            cont = [tk.PAD] * K + [tk.TOKEN_ID[str(p.answer)], tk.EOS]
            lat.append(len(rows))
        else:
            cont = continuation(p, m)
        rows.append((prompt, cont, m, p))
    S = max(len(a) + len(b) for a, b, _, _ in rows)
    B = len(rows)
    ids = torch.full((B, S), tk.PAD, dtype=torch.long)
    targets = torch.full((B, S), -100, dtype=torch.long)
    is_thought = torch.zeros(B, S)
    key_mask = torch.zeros(B, S, dtype=torch.bool)
    bot_index = torch.zeros(len(lat), dtype=torch.long)
    steps = torch.zeros(len(lat), K, 2, dtype=torch.long)
    operands = torch.zeros(len(lat), K, 2, dtype=torch.long)
    for r, (prompt, cont, m, p) in enumerate(rows):
        seq = prompt + cont
        n = len(seq)
        ids[r, :n] = torch.tensor(seq)
        key_mask[r, :n] = True
        start = len(prompt)
        for i in range(start - 1, n - 1):
            targets[r, i] = seq[i + 1]
        if m == "latent":
            j = lat.index(r)
            is_thought[r, start:start + K] = 1.0
            targets[r, start - 1:start + K - 1] = -100  # these positions predict thoughts
            bot_index[j] = start - 1
            steps[j] = torch.tensor(step_tokens(p, K))
            operands[j] = torch.tensor(operand_tokens(p, K))
    positions = torch.arange(S).unsqueeze(0).expand(B, S).contiguous()
    return {"ids": ids, "targets": targets, "is_thought": is_thought, "key_mask": key_mask,
            "positions": positions, "latent_rows": torch.tensor(lat, dtype=torch.long),
            "bot_index": bot_index, "steps": steps, "operands": operands}
