"""NF-CoT extras beside a Hugging Face checkpoint: nfcot_config.json + nfcot.safetensors.

The format (models/README.md, "NF-CoT extras"): the config names K, the thought dim, the flow's
shape, the span tokens and the default latent temperature; the tensors are the thought projection
(`thought_proj.*`), the NF head (`nf_head.*`), the shallow flow (`flow.*`, optional) and the step
VAE whose decoder is the thought decoder (`vae.*`, optional, needs the flow).
"""
from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file

from .flow import ShallowFlow
from .vae import StepVAE

CONFIG, TENSORS = "nfcot_config.json", "nfcot.safetensors"
FORMAT, VERSION = "nfcot-extras", 1
MODES = ("none", "explicit", "latent")


def _err(file, what):
    from .hf import HFError
    return HFError(file, what)


def read_config(d: str) -> dict | None:
    """nfcot_config.json checked field by field, or None when the directory has no extras."""
    from .hf import read_json
    x = read_json(d, CONFIG, required=False)
    if x is None:
        return None
    if x.get("format") != FORMAT or x.get("version") != VERSION:
        raise _err(CONFIG, f"format/version must be {FORMAT!r}/{VERSION}, got {x.get('format')!r}/{x.get('version')!r}")
    for k in ("num_thoughts", "thought_dim"):
        if not isinstance(x.get(k), int) or x[k] <= 0:
            raise _err(CONFIG, f"field {k} must be a positive integer, got {x.get(k)!r}")
    for k in ("bot_token", "eot_token"):
        if not isinstance(x.get(k), str) or not x[k]:
            raise _err(CONFIG, f"field {k} must name a token of tokenizer.json")
    t = x.get("default_temperature", 0.9)
    if not isinstance(t, (int, float)) or t < 0:
        raise _err(CONFIG, f"field default_temperature must be a number >= 0, got {t!r}")
    if x.get("span", "fixed") != "fixed":
        raise _err(CONFIG, f"field span {x.get('span')!r} is not supported (only 'fixed')")
    modes = x.get("reasoning_modes", list(MODES))
    if not set(modes) <= set(MODES) or "latent" not in modes:
        raise _err(CONFIG, f"field reasoning_modes {modes} must be a subset of {list(MODES)} holding 'latent'")
    if x.get("default_reasoning_mode", "latent") not in modes:
        raise _err(CONFIG, "field default_reasoning_mode is not one of reasoning_modes")
    if x.get("thought_decoder") and not x.get("flow"):
        raise _err(CONFIG, "field thought_decoder needs a flow (it decodes through the inverse flow)")
    if not os.path.exists(os.path.join(d, TENSORS)):
        raise _err(TENSORS, f"missing from {d} ({CONFIG} is present)")
    return x


def span_tokens(d: str, x: dict) -> dict:
    from .hf import token_id
    out = {}
    for key in ("bot", "eot"):
        tid = token_id(d, x[f"{key}_token"])
        if tid is None:
            raise _err(CONFIG, f"{key}_token {x[f'{key}_token']!r} is not a token of tokenizer.json")
        out[key] = tid
    return out


def modules(x: dict, vocab_size: int):
    """The flow and step VAE the config describes (None where absent)."""
    f, td = x.get("flow"), x.get("thought_decoder")
    flow = ShallowFlow(x["thought_dim"], x["num_thoughts"], blocks=int(f.get("blocks", 2)),
                       width=int(f.get("width", 64))) if f else None
    vae = StepVAE(int(td.get("vocab_size", vocab_size)), x["thought_dim"], width=int(td.get("width", 128))) if td else None
    return flow, vae


def expected(c, flow, vae) -> dict[str, tuple]:
    """Tensor names and shapes of nfcot.safetensors for model config c and the extra modules."""
    H, D = c.hidden_size, c.thought_dim
    out = {"thought_proj.0.weight": (H, D), "thought_proj.0.bias": (H,), "thought_proj.2.weight": (H, H),
           "thought_proj.2.bias": (H,), "nf_head.weight": (2 * D, H), "nf_head.bias": (2 * D,)}
    for prefix, mod in (("flow.", flow), ("vae.", vae)):
        if mod is not None:
            out.update({prefix + k: tuple(v.shape) for k, v in mod.state_dict().items()})
    return out


def check(d: str, x: dict, c):
    """Build the extra modules and check nfcot.safetensors against them (names, shapes, dtypes)
    for model config c, before the model is allocated."""
    from .hf import check_tensors, index_tensors
    flow, vae = modules(x, c.vocab_size)
    if vae is not None and vae.vocab != c.vocab_size:
        raise _err(CONFIG, f"thought_decoder vocab_size {vae.vocab} differs from config.json vocab_size "
                   f"{c.vocab_size} (its logits are over the model's tokens)")
    where = index_tensors(d, [TENSORS])
    want = expected(c, flow, vae)
    try:
        check_tensors(where, want, tied=False)
    except ValueError as e:
        raise _err(TENSORS, str(e).split(": ", 1)[1]) from None
    return flow, vae, where, want


def load(d, x, model, flow, vae, where, want) -> None:
    from .hf import load_tensors
    parts = [(model, [k for k in want if k.startswith(("thought_proj.", "nf_head."))], "")]
    if flow is not None:
        parts.append((flow, [k[5:] for k in want if k.startswith("flow.")], "flow."))
    if vae is not None:
        parts.append((vae, [k[4:] for k in want if k.startswith("vae.")], "vae."))
    for mod, names, prefix in parts:
        load_tensors(mod, d, where, names, f"loading {TENSORS} {prefix or 'heads'}",
                     rename=lambda k, p=prefix: p + k)
    for m in (flow, vae):
        if m is not None:
            m.eval()


def write(d: str, model, flow, vae, *, bot_token: str, eot_token: str, default_temperature: float = 0.9,
          reasoning_modes=MODES, default_reasoning_mode: str = "latent", flow_shape: dict | None = None,
          step_format: str | None = None) -> dict:
    """Write nfcot_config.json + nfcot.safetensors for model's NF head / thought projection and
    the optional flow and VAE (the trainer's checkpoints and the converter use this)."""
    c = model.config
    x = {"format": FORMAT, "version": VERSION, "num_thoughts": c.num_thoughts, "thought_dim": c.thought_dim,
         "default_temperature": default_temperature, "span": "fixed", "bot_token": bot_token,
         "eot_token": eot_token, "reasoning_modes": list(reasoning_modes),
         "default_reasoning_mode": default_reasoning_mode,
         "flow": None, "thought_decoder": None}
    if c.positional_heads:
        x["backbone"] = {"positional_heads": [int(o) for o in c.positional_heads]}
    sd = {k: v for k, v in model.state_dict().items() if k.startswith(("thought_proj.", "nf_head."))}
    if flow is not None:
        x["flow"] = flow_shape or {"blocks": len(flow.blocks), "width": flow.blocks[0].inp.out_features}
        sd.update({"flow." + k: v for k, v in flow.state_dict().items()})
    if vae is not None:
        x["thought_decoder"] = {"width": vae.emb.embedding_dim, "vocab_size": vae.vocab,
                                **({"step_format": step_format} if step_format else {})}
        sd.update({"vae." + k: v for k, v in vae.state_dict().items()})
    save_file({k: v.detach().contiguous().float() for k, v in sd.items()}, os.path.join(d, TENSORS))
    with open(os.path.join(d, CONFIG), "w") as f:
        json.dump(x, f, indent=1)
    return x
