"""How the models tools hand back a result: JSON on stdout and, on request, the same in a file;
manifests and records written as indented JSON. Standard library only: nfcot.quantize imports it
from the onnxruntime venv."""
from __future__ import annotations

import json


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def emit(result: dict, json_path: str | None = None) -> None:
    """An evaluation's result: printed (what the README commands show), and written to --json."""
    print(json.dumps(result, indent=1))
    if json_path:
        write_json(json_path, result)
