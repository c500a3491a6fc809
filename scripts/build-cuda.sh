#!/usr/bin/env bash
# Builds qwen3-agent with the CUDA engine (feature `cuda`) on any x86-64 Linux machine, GPU or not.
# The CUDA 13.0 compiler comes from pip (no system toolkit needed); the kernels are compiled for sm_90
# (H100/H200) plus compute_90 PTX, which newer GPUs' drivers compile at load. cuBLAS and the driver are
# loaded at run time, so nothing CUDA is linked.
#
# Usage: scripts/build-cuda.sh            → target/cuda/release/qwen3-agent (+ mcp-time, mcp-fetch, mcp-python)
#        scripts/build-cuda.sh --check    compiles the kernels and lints the CUDA engine (clippy, warnings
#                                         are errors), and builds scripts/cuda/kernel-bench.cu into
#                                         target/cuda/kernel-bench: what CI runs, no GPU needed
#        TOOLKIT_DIR=/path scripts/build-cuda.sh   (where the pip toolkit goes; default target/cuda-toolkit)
# Run on the GPU machine with the CUDA 13 libraries on the library path, e.g.
#   LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$LD_LIBRARY_PATH \
#     target/cuda/release/qwen3-agent bench --device cuda --model DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
toolkit=${TOOLKIT_DIR:-$root/target/cuda-toolkit}
if [[ ! -x $toolkit/venv/bin/python ]]; then
  python3 -m venv "$toolkit/venv"
fi
cu13=$("$toolkit/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
if [[ ! -x $cu13/bin/nvcc ]]; then
  echo "fetching the CUDA 13.0 compiler from pip into $toolkit" >&2
  "$toolkit/venv/bin/pip" install -q "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" \
    "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-cccl==13.0.*"
fi
export NVCC=$cu13/bin/nvcc CUDA_HOME=$cu13 PATH=$cu13/bin:$PATH
"$NVCC" --version | tail -2 >&2
cd "$root"
if [[ ${1:-} == --check ]]; then
  cargo clippy --release --features cuda --target-dir target/cuda --lib --bins -- -D warnings
  mkdir -p target/cuda
  "$NVCC" -O3 -std=c++17 -arch=sm_90 -cudart static -L"$cu13/lib" scripts/cuda/kernel-bench.cu \
    -o target/cuda/kernel-bench
  exit
fi
cargo build --release --features cuda --target-dir target/cuda --bin qwen3-agent
cargo build --release --target-dir target/cuda -p mcp-time -p mcp-fetch -p mcp-python
echo "built $root/target/cuda/release/qwen3-agent" >&2
