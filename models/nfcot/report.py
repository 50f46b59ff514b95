"""How the models tools hand back a result: JSON on stdout and, on request, the same in a file;
manifests and records written as indented JSON. Standard library only: nfcot.quantize imports it
from the onnxruntime venv."""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def emit(result: dict, json_path: str | None = None) -> None:
    """An evaluation's result: printed (what the README commands show), and written to --json."""
    print(json.dumps(result, indent=1))
    if json_path:
        write_json(json_path, result)


@contextmanager
def directory_written_whole(out: str):
    """Yields a path beside `out` to build a directory in (absent at first); on success it replaces
    `out`, so a reader (the server loading a model, a resumed recipe) sees the old directory or the
    new one whole. If the body raises, nothing is left and `out` is untouched."""
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
