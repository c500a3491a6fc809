#!/usr/bin/env bash
# llama.cpp with CUDA on the GPU machine (no internet there), for the side-by-side decode / prefill numbers:
#   scripts/cuda/llamacpp.sh build SRC_TARBALL DIR    builds llama-bench and llama-server from llama.cpp sources (the copy
#                                                     vendored in the llama-cpp-python 0.3.36 sdist), sm_90
#   scripts/cuda/llamacpp.sh gguf GGUF_WHEEL OUT.gguf  random Q4_0 Qwen3-8B (F16 lm_head) via make_llamacpp_gguf.py
#   scripts/cuda/llamacpp.sh bench DIR OUT.gguf        llama-bench -p 512,2048 -n 128 -ngl 99 -r 3
#   scripts/cuda/llamacpp.sh long DIR OUT.gguf         with flash attention: prefill of 2k-32k tokens, and
#                                                     64 tokens decoded after 16k and 32k cached ones
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
case ${1:?usage: llamacpp.sh build|gguf|bench|long ...} in
  build)
    mkdir -p "$3" && tar xJf "$2" -C "$3"
    cmake -S "$3/llama.cpp" -B "$3/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DGGML_NATIVE=OFF > "$3/cmake.log" 2>&1 || { tail -30 "$3/cmake.log"; exit 1; }
    cmake --build "$3/build" -j "${JOBS:-12}" --target llama-bench llama-server > "$3/build.log" 2>&1 || { tail -30 "$3/build.log"; exit 1; }
    ;;
  gguf)
    python3 -m pip install -q --no-index --no-deps --target /tmp/gguf-site "$2"
    PYTHONPATH=/tmp/gguf-site python3 "$here/../bench/make_llamacpp_gguf.py" "$3"
    ;;
  bench)
    "$2/build/bin/llama-bench" -m "$3" -p 512,2048 -n 128 -ngl 99 -r 3
    ;;
  long)
    "$2/build/bin/llama-bench" -m "$3" -p "${LENGTHS:-2048,8192,16384,32768}" -n 0 -fa 1 -ngl 99 -r 2
    "$2/build/bin/llama-bench" -m "$3" -p 0 -n 64 -d "${DEPTHS:-16384,32768}" -fa 1 -ngl 99 -r 2
    ;;
esac
