#!/usr/bin/env bash
# System packages the test suite needs beyond npm: Debian's PyTorch (with OpenBLAS, ~7x faster
# than the reference BLAS), ONNX and pytest for models/, matplotlib for the RL trainer's curve,
# Prometheus for the metrics test.
set -euo pipefail
need=()
/usr/bin/python3 -c "import torch, onnx, pytest, numpy" 2>/dev/null || need+=(python3-torch libopenblas0-pthread python3-onnx python3-pytest python3-numpy)
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || need+=(python3-matplotlib)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "test dependencies ready"
