#!/usr/bin/env bash
# System packages the test suite needs beyond npm: Debian's PyTorch (with OpenBLAS, ~7x faster
# than the reference BLAS), ONNX and pytest for models/, matplotlib for the RL trainer's curve,
# Prometheus for the metrics test; Jinja2,
# and from PyPI safetensors and tokenizers; Schemathesis (the schema-driven fuzzer of
# test/reliability/schema-fuzz.test.ts) in a virtual environment under the repository (.fuzz-venv,
# ignored by git), pinned, apart from the system's Python.
set -euo pipefail
need=()
/usr/bin/python3 -c "import torch, onnx, pytest, numpy" 2>/dev/null || need+=(python3-torch libopenblas0-pthread python3-onnx python3-pytest python3-numpy)
# Jinja2 renders chat templates as the reference for the JS renderer (scripts/tokenizer-reference.py).
/usr/bin/python3 -c "import jinja2" 2>/dev/null || need+=(python3-jinja2)
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || need+=(python3-matplotlib)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
/usr/bin/python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
SCHEMATHESIS_VERSION=4.32.5
FUZZ_VENV="$(cd "$(dirname "$0")/.." && pwd)/.fuzz-venv"
if ! "$FUZZ_VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  /usr/bin/python3 -m venv "$FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# safetensors (the Hugging Face loader, models/nfcot/hf.py) is not packaged by Debian 12: from PyPI.
/usr/bin/python3 -c "import safetensors" 2>/dev/null || \
  /usr/bin/python3 -m pip install -q --break-system-packages "safetensors>=0.4,<1"
# Hugging Face's tokenizers (not packaged by Debian): the reference for the JS tokenizer.
/usr/bin/python3 -c "import tokenizers" 2>/dev/null || \
  /usr/bin/python3 -m pip install -q --break-system-packages "tokenizers>=0.20"
# onnxruntime's quantizers (nfcot/quantize.py, `nfcot.export --weights`) need onnx >= 1.16 and numpy 2,
# which Debian's torch 1.13 / onnx 1.12 cannot share a process with: their own venv, onnxruntime
# pinned to the version onnxruntime-node runs (package.json), so the graphs it writes load there.
VENV="$(cd "$(dirname "$0")/.." && pwd)/models/.venv-ort"
if ! "$VENV/bin/python" -c "import onnxruntime.quantization.matmul_nbits_quantizer, onnxruntime.transformers.float16" 2>/dev/null; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "onnxruntime==1.30.0" "onnx>=1.17,<1.24" "onnx-ir>=0.1,<2" "ml_dtypes>=0.5" "sympy>=1.12"
fi
echo "test dependencies ready"
