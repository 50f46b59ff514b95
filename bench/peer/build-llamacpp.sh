#!/usr/bin/env bash
# Builds llama.cpp's llama-batched-bench and llama-server (CPU) from the sources shipped in the
# llama-cpp-python source distribution on PyPI: the only download (issue #20's rule). Minutes of
# compiling: run it under the shared lock. Output: bench/scratch/llamacpp/build/bin/.
#   flock /tmp/heavy.lock bash bench/peer/build-llamacpp.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIR="$ROOT/bench/scratch/llamacpp"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
mkdir -p "$DIR"
cd "$DIR"
if [ ! -f "llama_cpp_python-$VERSION.tar.gz" ]; then
  /usr/bin/python3 -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d .
fi
SRC="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -d "$SRC" ] || tar xzf "llama_cpp_python-$VERSION.tar.gz"
# -march=native turns on ggml's AMX kernels where the CPU lists AMX; on this project's Intel VMs
# they crashed llama-batched-bench on Q8_0 / Q4_0 (SIGILL at the first tile instruction on
# 2026-12-01; on 2026-12-02 a SIGSEGV inside ggml_backend_amx_mul_mat, where a small AMX program
# ran), so they are left out and the AVX-512 / VNNI kernels run, as on a CPU without AMX.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$SRC" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >cmake.log
cmake --build build --target llama-batched-bench llama-server -j "$(nproc)" >build.log
git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1 || true
echo "built: $(ls build/bin) (llama.cpp from llama-cpp-python $VERSION)"
