"""The trainers' --device option (nfcot.train, nfcot.rl): one spelling, one rule for `auto`.

auto takes CUDA when torch sees a GPU, else the CPU. Asking for cuda where torch sees none stops
at once with the reason, before any data is drawn or any file written.
"""
from __future__ import annotations

import argparse

import torch

DEVICES = ("auto", "cpu", "cuda")


def add_device_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="auto", choices=DEVICES,
                    help="where the model trains: auto = cuda when torch sees a GPU, else cpu")


def choose_device(name: str) -> str:
    """`--device` -> "cpu" or "cuda" (what the run records)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: torch {torch.__version__} sees no CUDA device "
                         f"(built with CUDA {torch.version.cuda or 'none'}); use --device cpu or --device auto")
    if name not in DEVICES:
        raise SystemExit(f"--device wants one of {', '.join(DEVICES)}, got {name!r}")
    return name
