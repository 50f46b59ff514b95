"""Decode steps through onnxruntime's fused CPU ops (com.microsoft RotaryEmbedding,
SkipSimplifiedLayerNormalization, FusedMatMul): the backbone of `nfcot.export --attention fused`.

The exported graph is one If: batches of at most FUSED_MAX_BATCH rows of one new position each
(decode and thought steps, the hot loop, which the runner sends as a group of their own:
src/engine/runner.ts) run the fused layers below, anything else (prefill chunks, mixed batches)
the plain block-layout layers of paged.py. Both branches read the same inputs and give the same
outputs: the graph's contract does not change. Each branch holds its own copy of the weights
(fused_graph.with_decode_branch says why): the file and the session's memory are twice the plain graph's.

Each decode layer gathers its past K (and V) straight into [B, kvH, T, hd] from the pool viewed
as rows of [block_size, hd], one row per (block, layer, K|V, kv head): no transpose. The g query
heads of a kv head score the gathered past and the new key apart (one FusedMatMul each: the
transpose and the scale inside the product) and meet in one softmax over T + 1 scores, so the
past is copied once, by the gather. One mask, built once per step, hides the padding, and layer
0's positional heads are its bias. Earlier forms appended the new key to the gathered past and
ran onnxruntime's MultiHeadAttention or GroupQueryAttention: the append copied every row's past a
second time (README, "Attention without the copy of the past").
"""
from __future__ import annotations

import torch

from .model import layer0_bias
from .paged import PagedBackbone, PagedTextBackbone

MS = "com.microsoft"
# The most single-position rows that take the fused path: the server's default max_num_seqs.
# Batches of 1 to 64 were measured on the shipped shape and the bench preset, 1 and 32 on the
# Qwen3-0.6B shape (README, "One MultiHeadAttention per decode layer" and after); larger batches
# were not, and keep the plain path.
FUSED_MAX_BATCH = 64


class RotaryOp(torch.autograd.Function):
    """x [B, S, heads * hd] rotated at position_ids [B, S] (rotate-half layout, as model.py)."""

    @staticmethod
    def forward(ctx, x, position_ids, cos_cache, sin_cache, num_heads: int):
        B, S, _ = x.shape
        hd = 2 * cos_cache.shape[1]
        cos = torch.cat([cos_cache, cos_cache], -1)[position_ids][:, :, None]
        sin = torch.cat([sin_cache, sin_cache], -1)[position_ids][:, :, None]
        y = x.reshape(B, S, num_heads, hd)
        rot = torch.cat([-y[..., hd // 2:], y[..., :hd // 2]], -1)
        return (y * cos + rot * sin).reshape(B, S, num_heads * hd)

    @staticmethod
    def symbolic(g, x, position_ids, cos_cache, sin_cache, num_heads: int):
        return g.op(f"{MS}::RotaryEmbedding", x, position_ids, cos_cache, sin_cache,
                    num_heads_i=num_heads, interleaved_i=0)


class ScoresOp(torch.autograd.Function):
    """q [..., g, hd] against keys [..., T, hd]: scale * q k^T, [..., g, T], as one com.microsoft
    FusedMatMul (the transpose and the scale inside the product: no copy of the keys)."""

    @staticmethod
    def forward(ctx, q, keys, scale: float):
        return torch.matmul(q, keys.transpose(-1, -2)) * scale

    @staticmethod
    def symbolic(g, q, keys, scale: float):
        return g.op(f"{MS}::FusedMatMul", q, keys, alpha_f=scale, transA_i=0, transB_i=1)


class SkipRMSNormOp(torch.autograd.Function):
    """(RMSNorm(x + skip) * weight, x + skip)."""

    @staticmethod
    def forward(ctx, x, skip, weight, eps: float):
        s = x + skip
        return s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps) * weight, s

    @staticmethod
    def symbolic(g, x, skip, weight, eps: float):
        out, _, _, s = g.op(f"{MS}::SkipSimplifiedLayerNormalization", x, skip, weight, epsilon_f=eps, outputs=4)
        return out, s


class _FusedDecodeLayers:
    def layers(self, h, positions, past_lens, kv_pool, block_tables, gather_index):
        """Decoder layers for one new position per row (S == 1) through the fused ops."""
        m = self.m
        c = m.config
        L, kvh, hd, nh = c.num_layers, c.num_kv_heads, c.head_dim, c.num_heads
        g = nh // kvh
        B = h.shape[0]
        MB = block_tables.shape[1]
        BS = kv_pool.shape[4]
        T = MB * BS
        rows = kv_pool.reshape(-1, BS, hd)
        # Row of (block, layer l, K|V, head): block * 2L*kvH + (2l + K|V) * kvH + head. (One Gather
        # of every layer's past, split per layer, measured slower at batch 32: a second copy.)
        base = (block_tables * (2 * L * kvh))[:, None, :] + torch.arange(kvh)[None, :, None]   # [B, kvH, MB]
        half = hd // 2
        cos_cache, sin_cache = m.rope_cos[:, :half], m.rope_sin[:, :half]
        scale = hd ** -0.5
        # Scores: the gathered past (index t is position t, valid below past_lens), then the new key
        # at index T (position past_lens). One mask for every layer, layer 0's positional heads in
        # its own bias.
        t = torch.arange(T + 1)[None]
        allowed = (t < past_lens[:, None]) | (t == T)                                          # [B, T+1]
        mask = torch.zeros(B, 1, g, T + 1).masked_fill(~allowed[:, None, None, :], -1e9)
        bias0 = mask
        if c.positional_heads:
            k_pos = torch.cat([t[:, :T].expand(B, -1), past_lens[:, None]], 1)
            bias0 = layer0_bias(c, positions, k_pos, allowed[:, None, :])                      # [B, kvH, g, T+1]
        news = []
        layers = list(m.model.layers)
        x = layers[0].input_layernorm(h)
        for l, layer in enumerate(layers):
            a = layer.self_attn
            q, k, v = a.q_proj(x), a.k_proj(x), a.v_proj(x)
            if c.qk_norm:
                q = a.q_norm(q.reshape(B, 1, nh, hd)).reshape(B, 1, nh * hd)
                k = a.k_norm(k.reshape(B, 1, kvh, hd)).reshape(B, 1, kvh * hd)
            q = RotaryOp.apply(q, positions, cos_cache, sin_cache, nh).reshape(B, kvh, g, hd)
            k = RotaryOp.apply(k, positions, cos_cache, sin_cache, kvh)
            # Past and new key scored apart, never concatenated (module docstring).
            k_new, v_new = k.reshape(B, kvh, 1, hd), v.reshape(B, kvh, 1, hd)
            k_past = rows[base + 2 * l * kvh].reshape(B, kvh, T, hd)
            v_past = rows[base + (2 * l + 1) * kvh].reshape(B, kvh, T, hd)
            s = torch.cat([ScoresOp.apply(q, k_past, scale), ScoresOp.apply(q, k_new, scale)], -1)
            p = torch.softmax(s + (bias0 if l == 0 else mask), -1)                             # [B, kvH, g, T+1]
            attn = torch.matmul(p[..., :-1], v_past) + p[..., -1:] * v_new                     # [B, kvH, g, hd]
            # Each residual add and the RMSNorm after it: one SkipSimplifiedLayerNormalization.
            x, h = SkipRMSNormOp.apply(a.o_proj(attn.reshape(B, 1, nh * hd)), h,
                                       layer.post_attention_layernorm.weight, c.rms_eps)
            out = layer.mlp(x)
            if l + 1 < L:
                x, h = SkipRMSNormOp.apply(out, h, layers[l + 1].input_layernorm.weight, c.rms_eps)
            else:
                h = h + out
            news += [k, v]
        # new_kv [L, 2, B, kvH, 1, hd] from one Concat (a stack costs an Unsqueeze per tensor).
        new_kv = torch.cat(news, -1).reshape(B, 2 * L, kvh, hd).transpose(0, 1).reshape(L, 2, B, kvh, 1, hd)
        return h.reshape(B, -1)[gather_index], new_kv


class FusedDecodeBackbone(_FusedDecodeLayers, PagedBackbone):
    """PagedBackbone's graph for S == 1 with the fused attention."""


class FusedDecodeTextBackbone(_FusedDecodeLayers, PagedTextBackbone):
    """PagedTextBackbone's graph for S == 1 with the fused attention."""
