"""Load a Hugging Face model directory (Llama / Qwen2 / Qwen3 causal LM) into the project's model.

  config.json, model.safetensors | model-*.safetensors + model.safetensors.index.json,
  tokenizer.json, tokenizer_config.json, generation_config.json (optional),
  nfcot_config.json + nfcot.safetensors (optional NF-CoT extras, nfcot/extras.py)

Everything that can be refused is refused before any weight is read: an unsupported architecture
or config feature (by name), a missing file, a tensor whose shape disagrees with config.json, a
tokenizer with ids the embedding cannot hold. Weights are read one tensor at a time with the
`safetensors` library and copied into the float32 model (bf16 / fp16 converted on the way), so
memory holds the model once plus one tensor.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from safetensors import safe_open

from .model import ModelConfig, NFCoTModel

ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
# Buffers some exporters save that the model recomputes.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class HFError(ValueError):
    """A bad input, naming the file and the field or tensor at fault."""

    def __init__(self, file: str, what: str):
        super().__init__(f"{file}: {what}")
        self.file = file


def read_json(d: str, name: str, required: bool = True):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        if required:
            raise HFError(name, f"missing from {d}")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise HFError(name, f"not valid JSON ({e})") from None


def _rope(cfg: dict) -> tuple[float, dict | None]:
    """rope_theta and llama3 scaling from config.json (transformers 4 `rope_scaling` or 5 `rope_parameters`)."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or (params if params.get("rope_type") not in (None, "default") else None)
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if not scaling:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return theta, None
    if kind != "llama3":
        raise HFError("config.json", f"rope_scaling type '{kind}' is not supported (only llama3)")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in scaling]
    if missing:
        raise HFError("config.json", f"rope_scaling llama3 lacks {', '.join(missing)}")
    if float(scaling["high_freq_factor"]) <= float(scaling["low_freq_factor"]):
        raise HFError("config.json", "rope_scaling high_freq_factor must exceed low_freq_factor")
    return theta, {"rope_type": "llama3", **{k: scaling[k] for k in keys}}


def config_from_hf(d: str, latent: dict | None = None) -> ModelConfig:
    """ModelConfig for config.json, or HFError naming the unsupported architecture / field.
    latent: the NF-CoT extras' config (thought dim, K, backbone patches) or None for text only."""
    cfg = read_json(d, "config.json")
    archs = cfg.get("architectures") or []
    if len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise HFError("config.json", f"architectures {archs} not supported (supported: {', '.join(ARCHITECTURES)})")
    family = ARCHITECTURES[archs[0]]

    def need(key):
        if key not in cfg or cfg[key] is None:
            raise HFError("config.json", f"field {key} is missing")
        return cfg[key]

    if cfg.get("hidden_act", "silu") != "silu":
        raise HFError("config.json", f"hidden_act '{cfg['hidden_act']}' is not supported (only silu)")
    if cfg.get("use_sliding_window"):
        raise HFError("config.json", "use_sliding_window is true: sliding-window attention is not supported")
    if family == "llama" and cfg.get("sliding_window"):
        raise HFError("config.json", "sliding_window is set: sliding-window attention is not supported")
    if cfg.get("quantization_config"):
        raise HFError("config.json", "quantization_config is set: quantized checkpoints are not supported")
    if cfg.get("mlp_bias"):
        raise HFError("config.json", "mlp_bias is true: MLP biases are not supported")
    theta, scaling = _rope(cfg)
    heads = int(need("num_attention_heads"))
    hidden = int(need("hidden_size"))
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    attention_bias = bool(cfg.get("attention_bias", False))
    latent = latent or {}
    patches = latent.get("backbone", {})
    if patches and family != "llama":
        raise HFError("nfcot_config.json", "field backbone (our positional heads) applies to LlamaForCausalLM only")
    c = ModelConfig(
        family="nfcot-trace" if patches else family,
        vocab_size=int(need("vocab_size")), hidden_size=hidden, num_layers=int(need("num_hidden_layers")),
        num_heads=heads, num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        intermediate_size=int(need("intermediate_size")), max_position=int(need("max_position_embeddings")),
        rope_theta=theta, rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        explicit_head_dim=0 if head_dim * heads == hidden else head_dim,
        qkv_bias=family == "qwen2" or attention_bias, o_bias=attention_bias and family != "qwen2",
        qk_norm=family == "qwen3", tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        rope_scaling=scaling, latent=bool(latent),
        thought_dim=int(latent.get("thought_dim", 16)), num_thoughts=int(latent.get("num_thoughts", 6)),
        positional_heads=tuple(patches.get("positional_heads", ())),
    )
    try:
        c.validate()
    except ValueError as e:
        raise HFError("config.json", str(e)) from None
    return c


def weight_files(d: str) -> list[str]:
    """The safetensors shards, in index order; every one must exist."""
    if os.path.exists(os.path.join(d, INDEX)):
        wm = read_json(d, INDEX).get("weight_map")
        if not isinstance(wm, dict) or not wm:
            raise HFError(INDEX, "weight_map is missing or empty")
        files = sorted(set(wm.values()))
    elif os.path.exists(os.path.join(d, SINGLE)):
        files = [SINGLE]
    else:
        raise HFError(SINGLE, f"missing from {d} (and no {INDEX})")
    for f in files:
        if not os.path.exists(os.path.join(d, f)):
            raise HFError(f, f"missing from {d} (listed in {INDEX})")
    return files


def backbone_shapes(c: ModelConfig) -> dict[str, tuple]:
    """Names and shapes model.safetensors must hold for config c (lm_head only when untied),
    worked out from the config so a bad checkpoint is refused before the model is allocated
    (tests/test_hf.py checks this equals NFCoTModel's own state dict)."""
    H, hd, V, I = c.hidden_size, c.head_dim, c.vocab_size, c.intermediate_size
    q, kv = c.num_heads * hd, c.num_kv_heads * hd
    out = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    for i in range(c.num_layers):
        p = f"model.layers.{i}."
        out.update({p + "self_attn.q_proj.weight": (q, H), p + "self_attn.k_proj.weight": (kv, H),
                    p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.o_proj.weight": (H, q),
                    p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H),
                    p + "mlp.down_proj.weight": (H, I), p + "input_layernorm.weight": (H,),
                    p + "post_attention_layernorm.weight": (H,)})
        if c.qkv_bias:
            out.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                        p + "self_attn.v_proj.bias": (kv,)})
        if c.o_bias:
            out[p + "self_attn.o_proj.bias"] = (H,)
        if c.qk_norm:
            out.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    if not c.tie_embeddings:
        out["lm_head.weight"] = (V, H)
    return out


def index_tensors(d: str, files: list[str]) -> dict[str, tuple[str, tuple, str]]:
    """name -> (file, shape, dtype), from the safetensors headers only."""
    where = {}
    for f in files:
        try:
            with safe_open(os.path.join(d, f), framework="pt") as st:
                for k in st.keys():
                    sl = st.get_slice(k)
                    where[k] = (f, tuple(sl.get_shape()), sl.get_dtype())
        except Exception as e:  # a truncated or foreign file: say which
            raise HFError(f, f"cannot be read as safetensors ({e})") from None
    return where


def check_tensors(where: dict, want: dict, tied: bool, source: str = SINGLE) -> None:
    for name, shape in want.items():
        if name not in where:
            raise HFError(source, f"tensor {name} is missing" + ("" if name != "lm_head.weight" else
                          " (config.json: tie_word_embeddings is false)"))
        f, got, dtype = where[name]
        if got != shape:
            raise HFError(f, f"tensor {name} has shape {list(got)}, config.json implies {list(shape)}")
        if dtype not in ("F32", "F16", "BF16"):
            raise HFError(f, f"tensor {name} has dtype {dtype} (float32, float16 and bfloat16 are supported)")
    extra = [k for k in where if k not in want and not k.endswith(IGNORED_SUFFIXES)
             and not (tied and k == "lm_head.weight")]
    if extra:
        raise HFError(where[extra[0]][0], f"tensor {extra[0]} is not part of the architecture"
                      + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))


class Progress:
    """Plain progress lines on stderr (a log, not a terminal bar: CI and pipes read it too)."""

    def __init__(self, total: int, label: str, out=sys.stderr, every_s: float = 2.0):
        self.total, self.label, self.out, self.every = max(total, 1), label, out, every_s
        self.done, self.t0, self.last = 0, time.time(), 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.time()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            pct = 100.0 * self.done / self.total
            print(f"{self.label}: {pct:5.1f}% ({self.done / 2**20:,.0f} / {self.total / 2**20:,.0f} MiB, "
                  f"{now - self.t0:.1f} s)", file=self.out, flush=True)


@torch.no_grad()
def load_tensors(module: torch.nn.Module, d: str, where: dict, names: list[str], label: str,
                 rename=lambda k: k) -> None:
    """Copy each named tensor from its file into module's parameter of the same name (float32)."""
    params = module.state_dict(keep_vars=True)
    by_file: dict[str, list[str]] = {}
    for n in names:
        by_file.setdefault(where[rename(n)][0], []).append(n)
    total = sum(params[n].numel() * params[n].element_size() for n in names)
    prog = Progress(total, label)
    for f, ns in by_file.items():
        with safe_open(os.path.join(d, f), framework="pt") as st:
            for n in ns:
                t = st.get_tensor(rename(n))
                params[n].data.copy_(t)  # converts bf16 / fp16 in place: no float32 temporary
                del t
                prog.add(params[n].numel() * params[n].element_size())


def tokenizer_size(d: str) -> int:
    """One past the largest id tokenizer.json can produce (model vocab and added tokens)."""
    tok = read_json(d, "tokenizer.json")
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        ids = list(vocab.values())
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        ids = [len(vocab) - 1] if vocab else []
    else:
        raise HFError("tokenizer.json", "model.vocab is missing")
    ids += [a["id"] for a in tok.get("added_tokens") or []]
    return max(ids) + 1 if ids else 0


def token_id(d: str, content) -> int | None:
    """Id of a special token given as tokenizer_config.json writes it (string or {content})."""
    if content is None:
        return None
    if isinstance(content, dict):
        content = content.get("content")
    tok = read_json(d, "tokenizer.json")
    for a in tok.get("added_tokens") or []:
        if a["content"] == content:
            return int(a["id"])
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict) and content in vocab:
        return int(vocab[content])
    return None


@dataclass
class HFModel:
    model: NFCoTModel
    hf_architecture: str
    special_tokens: dict
    eos_token_ids: list
    chat_template: str
    extras: dict | None = None          # nfcot_config.json, when the NF-CoT extras are present
    flow: torch.nn.Module | None = None
    vae: torch.nn.Module | None = None
    notes: list = field(default_factory=list)


def special_tokens(d: str) -> tuple[dict, list]:
    tc = read_json(d, "tokenizer_config.json")
    gen = read_json(d, "generation_config.json", required=False) or {}
    out = {}
    for key in ("bos", "eos", "pad", "unk"):
        given = tc.get(f"{key}_token")
        tid = token_id(d, given)
        if given is not None and tid is None:
            raise HFError("tokenizer_config.json", f"{key}_token {given!r} is not a token of tokenizer.json")
        if tid is not None:
            out[key] = tid
    gen_eos = gen.get("eos_token_id")
    gen_eos = [] if gen_eos is None else gen_eos if isinstance(gen_eos, list) else [gen_eos]
    eos_ids = ([out["eos"]] if "eos" in out else []) + [int(i) for i in gen_eos if int(i) != out.get("eos")]
    if not eos_ids:
        raise HFError("tokenizer_config.json", "no eos_token (and generation_config.json has no eos_token_id)")
    out.setdefault("eos", eos_ids[0])
    if "bos" not in out and gen.get("bos_token_id") is not None and tc.get("bos_token", "") is not None:
        out["bos"] = int(gen["bos_token_id"])
    return out, eos_ids


def chat_template(d: str) -> str:
    path = os.path.join(d, "chat_template.jinja")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    t = read_json(d, "tokenizer_config.json").get("chat_template")
    if isinstance(t, list):  # [{"name": "default", "template": ...}, ...]
        t = next((x["template"] for x in t if x.get("name") == "default"), None)
    if not isinstance(t, str) or not t:
        raise HFError("tokenizer_config.json", "chat_template is missing (and there is no chat_template.jinja)")
    return t


def load_hf(d: str, with_weights: bool = True) -> HFModel:
    """Check everything, then (with_weights) read the weights. Raises HFError on a bad input."""
    from . import extras as ex
    if not os.path.isdir(d):
        raise HFError(d, "is not a directory")
    xcfg = ex.read_config(d)
    c = config_from_hf(d, xcfg)
    arch = read_json(d, "config.json")["architectures"][0]
    st, eos_ids = special_tokens(d)
    template = chat_template(d)
    n_tok = tokenizer_size(d)
    if n_tok > c.vocab_size:
        raise HFError("tokenizer.json", f"holds ids up to {n_tok - 1} ({n_tok} tokens) but config.json vocab_size "
                      f"(the embedding's rows) is {c.vocab_size}: ids past it cannot be embedded")
    for k, v in {**st, **{f"eos_token_ids[{i}]": e for i, e in enumerate(eos_ids)}}.items():
        if not 0 <= v < c.vocab_size:
            raise HFError("generation_config.json", f"{k} = {v} is outside the vocabulary (0..{c.vocab_size - 1})")
    files = weight_files(d)
    where = index_tensors(d, files)
    want = backbone_shapes(c)
    check_tensors(where, want, c.tie_embeddings, INDEX if files != [SINGLE] else SINGLE)
    flow = vae = None
    if xcfg:
        st.update(ex.span_tokens(d, xcfg))
        flow, vae, xwhere, xwant = ex.check(d, xcfg, c)
    model = NFCoTModel(c, init=False).eval()
    if with_weights:
        load_tensors(model, d, where, list(want), "loading weights")
        if xcfg:
            ex.load(d, xcfg, model, flow, vae, xwhere, xwant)
    return HFModel(model, arch, st, eos_ids, template, xcfg, flow, vae)
