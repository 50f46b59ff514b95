"""Decode steps through onnxruntime's fused CPU ops (com.microsoft GroupQueryAttention,
RotaryEmbedding, SkipSimplifiedLayerNormalization): the backbone of `nfcot.export --attention fused`.

GroupQueryAttention takes a past K/V per row ([B, kvH, past, hd], row b valid up to seqlens_k[b])
and one new position per row, but refuses several rows with more than one new position each over
a past ("batch_size must be 1 when sequence_length > 1 and past context is given", onnxruntime
1.30). The runner sends single-position rows (decode and thought steps, the hot loop) in a group
of their own (src/engine/runner.ts), so the exported graph is one If: one new position per row
and at most fused_max_batch(num_heads) rows run the fused layers below, anything else the plain
block-layout layers of paged.py. Both branches read the same inputs and give the same outputs: the
graph's contract does not change. Each branch holds its own copy of the weights
(fused_graph.with_decode_branch says why): the file and the session's memory are twice the plain graph's.

Each decode layer gathers its past K (and V) straight into [B, kvH, T, hd] from the pool viewed
as rows of [block_size, hd], one row per (block, layer, K|V, kv head): no transpose. Layer 0's
positional heads are GroupQueryAttention's attention_bias.
"""
from __future__ import annotations

import torch

from .model import layer0_bias
from .paged import PagedBackbone, PagedTextBackbone

MS = "com.microsoft"
# How many single-position rows take the fused path: batch * num_heads <= FUSED_ROW_HEADS.
# onnxruntime's CPU GroupQueryAttention works per (row, head): against the plain graph's batched
# MatMuls it wins at small batches and loses at large ones (README, "Where a decode step goes":
# crossover near 16 rows for the shipped shape, 4 heads; near 4 for the bench preset, 12 heads).
FUSED_ROW_HEADS = 32


def fused_max_batch(num_heads: int) -> int:
    return max(1, FUSED_ROW_HEADS // num_heads)


def _none(g):
    """An omitted optional input (an empty name in the ONNX node)."""
    return g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())


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


class GroupQueryAttentionOp(torch.autograd.Function):
    """One new position per row: q [B, 1, H*hd], k / v [B, 1, kvH*hd], past [B, kvH, T, hd] valid
    up to seqlens_k [B] (int32), total_len = max(seqlens_k) + 1 (int32 scalar), bias [B, H, 1,
    total_len] or None. Returns the attention output [B, 1, H*hd]. The PyTorch forward computes
    the same numbers (it is what tracing runs); the graph runs onnxruntime's kernel."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total_len, bias, num_heads: int, kv_heads: int):
        B, _, _ = q.shape
        hd = past_k.shape[3]
        T = int(total_len)
        g = num_heads // kv_heads
        t = torch.arange(T)[None]
        keys = torch.cat([past_k, torch.zeros(B, kv_heads, max(0, T - past_k.shape[2]), hd)], 2)[:, :, :T].clone()
        vals = torch.cat([past_v, torch.zeros(B, kv_heads, max(0, T - past_v.shape[2]), hd)], 2)[:, :, :T].clone()
        idx = seqlens_k.long()
        keys[torch.arange(B), :, idx] = k.reshape(B, kv_heads, hd)
        vals[torch.arange(B), :, idx] = v.reshape(B, kv_heads, hd)
        qh = q.reshape(B, num_heads, 1, hd)
        kh = keys.repeat_interleave(g, 1)
        vh = vals.repeat_interleave(g, 1)
        s = qh @ kh.transpose(-1, -2) / hd ** 0.5
        s = s.masked_fill((t > idx[:, None])[:, None, None, :], float("-inf"))
        if bias is not None:
            s = s + bias
        return (torch.softmax(s, -1) @ vh).reshape(B, 1, num_heads * hd)

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total_len, bias, num_heads: int, kv_heads: int):
        extra = [] if bias is None else [_none(g), _none(g), _none(g), bias]
        out, _, _ = g.op(f"{MS}::GroupQueryAttention", q, k, v, past_k, past_v, seqlens_k, total_len, *extra,
                         num_heads_i=num_heads, kv_num_heads_i=kv_heads, outputs=3)
        return out


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
        B = h.shape[0]
        MB = block_tables.shape[1]
        BS = kv_pool.shape[4]
        T = MB * BS
        rows = kv_pool.reshape(-1, BS, hd)
        # Row of (block, layer l, K|V, head): block * 2L*kvH + (2l + K|V) * kvH + head. (One Gather
        # of every layer's past, split per layer, measured slower at batch 32: a second copy.)
        base = (block_tables * (2 * L * kvh))[:, None, :] + torch.arange(kvh)[None, :, None]   # [B, kvH, MB]
        seqlens = past_lens.to(torch.int32)
        total_len = past_lens.max() + 1
        total = total_len.to(torch.int32)
        half = hd // 2
        cos_cache, sin_cache = m.rope_cos[:, :half], m.rope_sin[:, :half]
        bias0 = None
        if c.positional_heads:
            # Key index t is position t: the past up to past_lens, then the new key.
            k_pos = torch.arange(total_len)[None].expand(B, -1)
            allowed = (k_pos <= past_lens[:, None])[:, None, :]
            bias0 = layer0_bias(c, positions, k_pos, allowed).reshape(B, nh, 1, -1)
        news = []
        layers = list(m.model.layers)
        x = layers[0].input_layernorm(h)
        for l, layer in enumerate(layers):
            a = layer.self_attn
            q, k, v = a.q_proj(x), a.k_proj(x), a.v_proj(x)
            if c.qk_norm:
                q = a.q_norm(q.reshape(B, 1, nh, hd)).reshape(B, 1, nh * hd)
                k = a.k_norm(k.reshape(B, 1, kvh, hd)).reshape(B, 1, kvh * hd)
            q = RotaryOp.apply(q, positions, cos_cache, sin_cache, nh)
            k = RotaryOp.apply(k, positions, cos_cache, sin_cache, kvh)
            past_k = rows[base + 2 * l * kvh].reshape(B, kvh, T, hd)
            past_v = rows[base + (2 * l + 1) * kvh].reshape(B, kvh, T, hd)
            bias = bias0 if l == 0 else None
            attn = GroupQueryAttentionOp.apply(q, k, v, past_k, past_v, seqlens, total, bias, nh, kvh)
            # Each residual add and the RMSNorm after it: one SkipSimplifiedLayerNormalization.
            x, h = SkipRMSNormOp.apply(a.o_proj(attn), h, layer.post_attention_layernorm.weight, c.rms_eps)
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
