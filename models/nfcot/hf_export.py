"""Export a Hugging Face model directory to the server's model directory (`nfcot.export --hf`).

Every check (nfcot/hf.py) runs before any work. OUT is written whole or not at all: the graphs,
tokenizer files, chat template and manifest go to a scratch folder beside OUT, renamed into place
at the end; on any failure the scratch folder is removed and OUT is as it was.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from .export import export_graphs, manifest_fields
from .hf import HFError, load_hf
from .provenance import code_state
from .report import write_json


def manifest_for(hm, name: str, graphs: dict, flags: list) -> dict:
    c = hm.model.config
    x = hm.extras
    arch = {**c.to_dict(), "head_dim": c.head_dim}
    del arch["latent"]  # the manifest's own `latent` block says it
    if not x:
        for k in ("thought_dim", "num_thoughts"):
            del arch[k]
    m = {
        **manifest_fields(name, arch, c.max_position, graphs, special_tokens=hm.special_tokens,
                          eos_token_ids=hm.eos_token_ids, reasoning_modes=["none"], default_reasoning_mode="none"),
        "weights": {"dtype": "float32"},
        "source": {"hf_architecture": hm.hf_architecture, "exporter_commit": code_state()["commit"] or "unknown",
                   "flags": flags},
    }
    if x:
        m["latent"] = {"num_thoughts": x["num_thoughts"], "thought_dim": x["thought_dim"],
                       "default_temperature": x.get("default_temperature", 0.9), "span": "fixed"}
        m["reasoning_modes"] = x.get("reasoning_modes", ["none", "explicit", "latent"])
        m["default_reasoning_mode"] = x.get("default_reasoning_mode", "latent")
    split = (x or {}).get("reasoning_split") or think_markers(hm.chat_template)
    if split:
        m["reasoning_split"] = split
    return m


def think_markers(template: str) -> dict | None:
    """Where the reply's reasoning ends, when the chat template writes <think> ... </think> turns
    (Qwen3, DeepSeek-R1): the server returns the trace as reasoning_content, the rest as content."""
    return {"start": "<think>", "end": "</think>"} if "<think>" in template and "</think>" in template else None


def export_hf(src: str, out: str, name: str | None = None, overwrite: bool = False,
              external: bool | None = None, flags: list | None = None, attention: str = "plain") -> dict:
    """Check and load src, write OUT atomically; returns the manifest. Raises HFError on bad input."""
    t0 = time.time()
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise HFError(out, "already exists and is not empty (pass --overwrite to replace it)")
    hm = load_hf(src)  # every check runs before the first weight is read
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        print(f"loaded {hm.hf_architecture} in {time.time() - t0:.1f} s; exporting graphs", file=sys.stderr, flush=True)
        graphs = export_graphs(tmp, hm.model, hm.flow, hm.vae, stop_token_id=hm.special_tokens.get("eot", -1),
                               step_format=((hm.extras or {}).get("thought_decoder") or {}).get("step_format", "{0} = {1}"),
                               external=external, attention=attention)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
        with open(os.path.join(tmp, "chat_template.jinja"), "w", encoding="utf-8") as f:
            f.write(hm.chat_template)
        m = manifest_for(hm, name or os.path.basename(out), graphs, flags or [])
        write_json(os.path.join(tmp, "manifest.json"), m)
        del hm
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"exported to {out} in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return m
