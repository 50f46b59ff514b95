"""The code a run or an export came from: the repository's commit, and whether models/nfcot has
changes not in it. Recorded by the recipe runner, the RL trainer and the Hugging Face exporter."""
from __future__ import annotations

import os
import subprocess

NFCOT = os.path.dirname(os.path.abspath(__file__))


def code_state() -> dict:
    """{"commit", "dirty"}; both None outside a git checkout (or without git)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=NFCOT, capture_output=True, text=True, check=True, timeout=10).stdout
    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(git("status", "--porcelain", "--", ".").strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
