"""Llama-style NF-CoT backbone with an LM head, a thought projection and an NF (Gaussian) head.

Weight names follow the Hugging Face Llama / Qwen2 / Qwen3 layout (model.embed_tokens,
model.layers.N.self_attn.q_proj, mlp.gate_proj, ..., lm_head) so that a real checkpoint maps onto
it (nfcot/hf.py). The config flags below cover what those families add: q/k/v biases (Qwen2),
per-head q/k RMSNorm and an explicit head dim (Qwen3), llama3 RoPE scaling, tied embeddings, and
no NF-CoT heads at all (a plain causal LM: text modes only).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 2.0


@dataclass
class ModelConfig:
    vocab_size: int = 210
    hidden_size: int = 128
    num_layers: int = 6
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 352
    max_position: int = 256
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    thought_dim: int = 16
    num_thoughts: int = 6
    # Layer 0's first heads attend by position only: head i to the token positional_heads[i]
    # back. They hand every position its previous tokens, which a look-up ("the number after the
    # latest `a =`") needs in its keys and queries. Added with the run that first learned the
    # look-ups; whether that run needed them is not measured (models/README.md). () = plain Llama.
    positional_heads: tuple = (1, 2, 3)
    family: str = "nfcot-trace"          # nfcot-trace | llama | qwen2 | qwen3 (the manifest's family)
    explicit_head_dim: int = 0           # 0: hidden_size // num_heads (Qwen3 sets its own)
    qkv_bias: bool = False               # Qwen2; Llama's attention_bias (with o_bias)
    o_bias: bool = False
    qk_norm: bool = False                # Qwen3: RMSNorm over each head's q and k before RoPE
    tie_embeddings: bool = False         # lm_head shares embed_tokens' weight
    rope_scaling: dict | None = None     # {"rope_type": "llama3", factor, low/high_freq_factor, original_max_position_embeddings}
    latent: bool = True                  # thought projection and NF head present (else text modes only)

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_heads

    def validate(self) -> None:
        problems = []
        if not self.explicit_head_dim and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            problems.append(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if (self.explicit_head_dim or self.hidden_size // max(self.num_heads, 1)) % 2:
            problems.append("head_dim must be even for rotary embeddings")
        if len(self.positional_heads) > self.num_heads or any(int(o) < 1 for o in self.positional_heads):
            problems.append(f"positional_heads {list(self.positional_heads)} must be at most num_heads offsets, each >= 1")
        for name in ("vocab_size", "num_layers", "intermediate_size", "max_position", "thought_dim", "num_thoughts"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if problems:
            raise ValueError("inconsistent model config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        # Checkpoints saved before positional heads existed were trained without them.
        return cls(**{"positional_heads": (), **d})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["positional_heads"] = [int(o) for o in self.positional_heads]
        return d


def rope_inv_freq(c: ModelConfig) -> torch.Tensor:
    """RoPE inverse frequencies (float64), with llama3 scaling applied when configured (as in
    Hugging Face's _compute_llama3_parameters: long wavelengths divided by factor, short ones
    kept, a smooth blend between)."""
    hd = c.head_dim
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = c.rope_scaling
    if not rs:
        return inv
    factor, lo, hi = float(rs["factor"]), float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old = float(rs["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, blended, scaled)


def layer0_bias(c: ModelConfig, q_pos, k_pos, allowed):
    """Additive attention bias of layer 0: head i < len(positional_heads) sees only the key at
    position q - positional_heads[i] (position 0 near the start), the others every allowed key.
    q_pos [B, S], k_pos [B, T], allowed [B, S, T] bool -> [B, kvH, g*S, T] in q's row order."""
    B, S, T = allowed.shape
    heads = []
    for h in range(c.num_heads):
        if h < len(c.positional_heads):
            target = (q_pos - int(c.positional_heads[h])).clamp(min=0)
            heads.append(allowed & (k_pos[:, None, :] == target[:, :, None]))
        else:
            heads.append(allowed)
    ok = torch.stack(heads, 1)
    bias = torch.zeros(B, c.num_heads, S, T, device=allowed.device).masked_fill(~ok, -1e9)
    return bias.reshape(B, c.num_kv_heads, (c.num_heads // c.num_kv_heads) * S, T)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x: torch.Tensor, half: int) -> torch.Tensor:
    # half is the config's head_dim // 2, a Python int: traced from x.shape it would cost the
    # exported graph a Shape, Gather, Div and Unsqueeze per call (2 calls per layer, every step).
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class Attention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        hd = c.head_dim
        self.c = c
        self.q_proj = nn.Linear(c.hidden_size, c.num_heads * hd, bias=c.qkv_bias)
        self.k_proj = nn.Linear(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias)
        self.v_proj = nn.Linear(c.hidden_size, c.num_kv_heads * hd, bias=c.qkv_bias)
        self.o_proj = nn.Linear(c.num_heads * hd, c.hidden_size, bias=c.o_bias)
        if c.qk_norm:
            self.q_norm = RMSNorm(hd, c.rms_eps)
            self.k_norm = RMSNorm(hd, c.rms_eps)

    def qkv(self, x, cos, sin, B=None, S=None):
        """q [B, kvH, g*S, hd] grouped by kv head (query-major inside a group), k, v [B, kvH, S, hd].
        B, S: the caller's (traced once per graph rather than once per layer)."""
        c = self.c
        if B is None:
            B, S, _ = x.shape
        hd, kvh, g = c.head_dim, c.num_kv_heads, c.num_heads // c.num_kv_heads
        q = self.q_proj(x).view(B, S, c.num_heads, hd)
        k = self.k_proj(x).view(B, S, kvh, hd)
        if c.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(B, S, kvh, hd).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q, hd // 2) * sin
        k = k * cos + rotate_half(k, hd // 2) * sin
        return q.reshape(B, kvh, g * S, hd), k, v

    def out(self, attn, B, S):
        c = self.c
        return self.o_proj(attn.reshape(B, c.num_heads, S, c.head_dim).transpose(1, 2).reshape(B, S, -1))


class MLP(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_eps)


class Backbone(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(c) for _ in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_eps)


class NFCoTModel(nn.Module):
    def __init__(self, c: ModelConfig, init: bool = True):
        """init=False skips the random initialisation (weights about to be loaded: saves minutes at real sizes)."""
        super().__init__()
        c.validate()
        self.config = c
        self.model = Backbone(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if c.latent:
            # Continuous-thought projection: thought (flow space) -> embedding width.
            self.thought_proj = nn.Sequential(nn.Linear(c.thought_dim, c.hidden_size), nn.SiLU(),
                                              nn.Linear(c.hidden_size, c.hidden_size))
            # NF head: hidden -> (mu, log sigma) per thought dimension.
            self.nf_head = nn.Linear(c.hidden_size, 2 * c.thought_dim)
        inv = rope_inv_freq(c)
        ang = torch.outer(torch.arange(c.max_position, dtype=torch.float64), inv)
        ang = torch.cat([ang, ang], -1)
        self.register_buffer("rope_cos", ang.cos().float(), persistent=False)
        self.register_buffer("rope_sin", ang.sin().float(), persistent=False)
        if not init:
            return
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
        for layer in self.model.layers:
            nn.init.normal_(layer.self_attn.o_proj.weight, 0.0, 0.02 / math.sqrt(2 * c.num_layers))
            nn.init.normal_(layer.mlp.down_proj.weight, 0.0, 0.02 / math.sqrt(2 * c.num_layers))
        if c.latent:
            nn.init.zeros_(self.nf_head.weight)
            nn.init.zeros_(self.nf_head.bias)

    def embed(self, input_ids, thoughts=None, is_thought=None):
        tok = self.model.embed_tokens(input_ids)
        if not self.config.latent or thoughts is None:
            return tok
        th = self.thought_proj(thoughts)
        m = is_thought.unsqueeze(-1).to(tok.dtype)
        return tok * (1.0 - m) + th * m

    def heads(self, h):
        """Final norm, then logits and NF parameters at the given hidden states (None, None for a
        model without the NF head)."""
        x = self.model.norm(h)
        logits = self.logits(x)
        if not self.config.latent:
            return logits, None, None
        mu, log_sigma = self.nf_head(x).chunk(2, -1)
        return logits, mu, log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)

    def logits(self, x):
        if not self.config.tie_embeddings:
            return self.lm_head(x)
        # (W x^T)^T rather than x W^T: the ONNX exporter folds W^T into a second copy of the
        # embedding (622 MB at Qwen3-0.6B's size); this way the graph reads the one embedding.
        return torch.matmul(self.lm_head.weight, x.transpose(-1, -2)).transpose(-1, -2)

    def forward(self, input_ids, thoughts, is_thought, positions, key_mask=None, past=None, taps=None):
        # thoughts / is_thought are ignored (may be None) for a model without NF-CoT heads.
        """Dense forward (training, evaluation). key_mask [B, T_past + S] marks real keys; causal
        order is by index. past: list of (k, v) per layer. taps: a list that receives the hidden
        states after each layer (training losses on inner layers). Returns hidden [B, S, H], new past."""
        c = self.config
        B, S = input_ids.shape
        h = self.embed(input_ids, thoughts, is_thought)
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        P = 0 if past is None else past[0][0].shape[2]
        T = P + S
        g = c.num_heads // c.num_kv_heads
        causal = torch.ones(S, T, dtype=torch.bool, device=h.device).tril(P)
        allowed = causal[None, None]
        if key_mask is not None:
            allowed = allowed & key_mask[:, None, None, :].bool()
        bias = torch.zeros(B, 1, S, T, device=h.device).masked_fill(~allowed, -1e9)
        bias = bias.repeat(1, 1, g, 1)  # rows follow q's (g, S) order
        # Key positions: real keys are contiguous positions, whatever the padding side.
        k_pos = (key_mask.long().cumsum(1) - 1) if key_mask is not None else torch.arange(T, device=h.device)[None].expand(B, T)
        bias0 = layer0_bias(c, positions, k_pos, allowed[:, 0].expand(B, S, T))
        new_past = []
        for i, layer in enumerate(self.model.layers):
            a = layer.self_attn
            q, k, v = a.qkv(layer.input_layernorm(h), cos, sin)
            if past is not None:
                k = torch.cat([past[i][0], k], 2)
                v = torch.cat([past[i][1], v], 2)
            new_past.append((k, v))
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c.head_dim) + (bias0 if i == 0 and c.positional_heads else bias), -1)
            h = h + a.out(p @ v, B, S)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
            if taps is not None:
                taps.append(h)
        return h, new_past


def gaussian_log_prob(u, mu, log_sigma):
    """Exact log N(u; mu, sigma^2) summed over the last dimension."""
    z = (u - mu) * torch.exp(-log_sigma)
    return (-0.5 * z * z - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)
