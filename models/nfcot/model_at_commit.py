"""A model directory as a commit holds it: the base a recipe starts from, read from git history.

A recipe that continues a released model (RL from the previous release) must not read the working
tree's directory: shipping the result replaces it. This writes every file of PATH at COMMIT to OUT.

  /usr/bin/python3 -m nfcot.model_at_commit --commit 6a0bbff --path models/nfcot-trace-small --out runs/x/base
"""
from __future__ import annotations

import argparse
import os
import subprocess

from .report import directory_written_whole

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=True).stdout


def write_model_at(commit: str, path: str, out: str) -> list[str]:
    """Files of `path` (a directory, repository-relative) at `commit` into `out`; returns their names.
    Written beside and renamed, so `out` is whole or absent."""
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    names = git("ls-tree", "--name-only", f"{full}:{path.rstrip('/')}").decode().split()
    if "manifest.json" not in names:
        raise SystemExit(f"{path} at {commit} holds no manifest.json: not a model directory")
    with directory_written_whole(out) as tmp:
        os.makedirs(tmp)
        for n in names:
            with open(os.path.join(tmp, n), "wb") as f:
                f.write(git("show", f"{full}:{path.rstrip('/')}/{n}"))
    return names


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--path", required=True, help="the model directory, relative to the repository root")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    names = write_model_at(args.commit, args.path, args.out)
    print(f"{args.path} at {args.commit}: {len(names)} files -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
