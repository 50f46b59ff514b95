"""The backbone as the server runs it: a paged KV pool in, only new K/V and head outputs out.

One graph serves prefill chunks, decode steps, thought steps and scoring passes. Rows are right
padded to S; causal order keeps valid queries from seeing pad keys, so no length input is needed.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .model import NFCoTModel, layer0_bias


class PagedBackbone(nn.Module):
    def __init__(self, model: NFCoTModel):
        super().__init__()
        self.m = model

    def forward(self, input_ids, thought_inputs, is_thought, positions, past_lens, kv_pool,
                block_tables, gather_index):
        h = self.m.embed(input_ids, thought_inputs, is_thought)
        sel, new_kv = self.layers(h, positions, past_lens, kv_pool, block_tables, gather_index)
        logits, mu, log_sigma = self.m.heads(sel)
        return logits, mu, log_sigma, new_kv

    def layers(self, h, positions, past_lens, kv_pool, block_tables, gather_index):
        """Decoder layers over the paged pool: hidden states at gather_index, and the new K/V."""
        m = self.m
        c = m.config
        L, kvh, hd = c.num_layers, c.num_kv_heads, c.head_dim
        g = c.num_heads // kvh
        B, S = h.shape[:2]
        MB = block_tables.shape[1]
        BS = kv_pool.shape[4]
        T = MB * BS
        cos, sin = m.rope_cos[positions], m.rope_sin[positions]
        # Free reshape of the pool to rows [kvH, BS, hd]; row = block * 2L + 2l + (0 for K, 1 for V).
        pf = kv_pool.reshape(-1, kvh, BS, hd)
        base = block_tables * (2 * L)
        t = torch.arange(T).unsqueeze(0)
        past_ok = t < past_lens.unsqueeze(1)                                   # [B, T]
        past_bias = torch.zeros(B, T).masked_fill(~past_ok, -1e9)[:, None, None, :]
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        new_bias = torch.zeros(S, S).masked_fill(~causal, -1e9).repeat(g, 1)[None, None]
        scale = 1.0 / math.sqrt(hd)
        # Layer 0 (positional heads): one bias over past and new keys; past key t sits at position t.
        k_pos = torch.cat([t.expand(B, T), positions], 1)
        allowed = torch.cat([past_ok[:, None, :].expand(B, S, T), causal[None].expand(B, S, S)], -1)
        bias0 = layer0_bias(c, positions, k_pos, allowed)
        news = []
        for l, layer in enumerate(m.model.layers):
            a = layer.self_attn
            q, k, v = a.qkv(layer.input_layernorm(h), cos, sin, B, S)         # q [B, kvH, gS, hd]
            Kb, Vb = pf[base + 2 * l], pf[base + 2 * l + 1]                    # [B, MB, kvH, BS, hd]
            s_past = torch.matmul(q.unsqueeze(1), Kb.transpose(-1, -2))        # [B, MB, kvH, gS, BS]
            s_past = s_past.permute(0, 2, 3, 1, 4).reshape(B, kvh, g * S, T) * scale
            s_new = torch.matmul(q, k.transpose(-1, -2)) * scale              # [B, kvH, gS, S]
            if l == 0 and c.positional_heads:
                p = torch.softmax(torch.cat([s_past, s_new], -1) + bias0, -1)
            else:
                p = torch.softmax(torch.cat([s_past + past_bias, s_new + new_bias], -1), -1)
            pp = p[..., :T].reshape(B, kvh, g * S, MB, BS).permute(0, 3, 1, 2, 4)
            attn = torch.matmul(pp, Vb).sum(1) + torch.matmul(p[..., T:], v)
            h = h + a.out(attn, B, S)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
            news += [k, v]
        new_kv = torch.stack(news, 0).reshape(L, 2, B, kvh, S, hd)
        return h.reshape(B * S, -1)[gather_index], new_kv


class PagedTextBackbone(PagedBackbone):
    """The same graph for a model without NF-CoT heads: no thought inputs, no mu / log_sigma."""

    def forward(self, input_ids, positions, past_lens, kv_pool, block_tables, gather_index):
        h = self.m.embed(input_ids)
        sel, new_kv = self.layers(h, positions, past_lens, kv_pool, block_tables, gather_index)
        return self.m.heads(sel)[0], new_kv


class FlowForward(nn.Module):
    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, e):
        return self.flow(e)


class FlowInverse(nn.Module):
    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, u):
        return self.flow.inverse(u)


class ThoughtDecoder(nn.Module):
    """Thoughts (flow space) -> e through the inverse flow -> (variable, value) logits per slot."""

    def __init__(self, flow, vae):
        super().__init__()
        self.flow, self.vae = flow, vae

    def forward(self, thoughts):
        return self.vae.decode_logits(self.flow.inverse(thoughts))
