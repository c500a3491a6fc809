#!/usr/bin/env bash
# One device command: CUDA correctness checks, then speed on a synthetic Qwen3-8B-AWQ checkpoint written
# there (6 GB; not carried). BIN is the CUDA build (scripts/build-cuda.sh); results go to $OUT.
#   scripts/cuda/device-run.sh BIN [check|bench|all]
#   scripts/cuda/device-run.sh BIN ab [VARIANT ...]
#   scripts/cuda/device-run.sh BIN sampling
#   scripts/cuda/device-run.sh BIN long [VARIANT ...]
#   scripts/cuda/device-run.sh BIN fp8
#   LLAMA_DIR=DIR GGUF=FILE scripts/cuda/device-run.sh BIN serve
# ab: decode after DEPTH tokens (default 512; GEN tokens, default 128) for each VARIANT in turn, ROUNDS
# times (default 2), so variants measured in one command share the machine's state; a variant is a
# command prefix run with bash (another binary, or "QWEN3_AGENT_CUDA_OVERLAP=0 BIN"), optionally followed
# by " -- " and bench flags ("BIN -- --temperature 0.6"). Without variants: BIN with the kernel overlap
# on and off.
# sampling: ab over greedy, sampled with the thinking defaults (on the device, and on the host as before
# sample.rs), thinking + presence_penalty 1.5, and the non-thinking defaults.
# fp8: check_fp8.py (the fp8 KV cache against the f16 one).
# serve: scripts/bench-serve.sh on the GPU: our `serve` beside llama-server (built by `llamacpp.sh build
# DIR`, -ngl 99 -fa on -np 8), MAX_TOKENS (default 128) per answer, REQUESTS (default 2) per client.
# long: prefill of LENGTHS tokens (default 2048 8192 16384 32768) and GEN decoded tokens after them (default
# 64), for each VARIANT in turn (as in ab; default BIN).
set -uo pipefail
bin=${1:?usage: device-run.sh BIN [check|bench|all] | device-run.sh BIN ab [VARIANT ...]}
what=${2:-all}
out=${OUT:-/tmp/cuda-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
status=0
if [[ $what == check || $what == all ]]; then
  python3 "$(dirname "$0")/check.py" "$bin" "$out/check" 2>&1 | tee "$out/check.txt" || status=1
fi
if [[ $what == fp8 ]]; then
  python3 "$(dirname "$0")/check_fp8.py" "$bin" "$out/check" 2>&1 | tee "$out/check_fp8.txt" || status=1
fi
if [[ $what == serve ]]; then
  model=/tmp/q8b
  [[ -d $model ]] || "$bin" synth --preset qwen3-8b --out "$model"
  BIN=$bin SERVER=${LLAMA_DIR:?}/build/bin/llama-server GGUF=${GGUF:?} MODEL_DIR=$model THREADS=16 \
    LLAMA_ARGS="-ngl 99 -fa on -np 8" MAX_TOKENS=${MAX_TOKENS:-128} REQUESTS=${REQUESTS:-2} \
    bash "$(dirname "$0")/../bench-serve.sh" 2>&1 | tee "$out/serve.txt" || status=1
fi
if [[ $what == bench || $what == all ]]; then
  model=/tmp/q8b
  [[ -d $model ]] || "$bin" synth --preset qwen3-8b --out "$model"
  for prompt in 512 2048; do
    "$bin" bench --device cuda --model "$model" --prompt-tokens $prompt --gen-tokens 128 --context-length 4096 \
      2>&1 | tee -a "$out/bench.txt" || status=1
  done
fi
if [[ $what == sampling ]]; then
  thinking="--temperature 0.6 --top-k 20 --top-p 0.95"
  set -- "$bin" ab "$bin" "$bin -- $thinking" "QWEN3_AGENT_CUDA_DEVICE_SAMPLING=0 $bin -- $thinking" \
    "$bin -- $thinking --presence-penalty 1.5" "$bin -- --temperature 0.7 --top-k 20 --top-p 0.8"
  what=ab
fi
if [[ $what == long ]]; then
  shift 2
  variants=("$@")
  (( ${#variants[@]} )) || variants=("$bin")
  model=/tmp/q8b
  [[ -d $model ]] || "$bin" synth --preset qwen3-8b --out "$model"
  for length in ${LENGTHS:-2048 8192 16384 32768}; do
    for variant in "${variants[@]}"; do
      prefix=${variant%% -- *}
      flags=; [[ $variant == *" -- "* ]] && flags=${variant#* -- }
      bash -c "$prefix bench --device cuda --model $model --prompt-tokens $length --gen-tokens ${GEN:-64} \
        --context-length $((length + ${GEN:-64} + 64)) $flags" 2>&1 | grep -vE '^\s*$' | sed "s|^|[$length $variant] |" \
        | tee -a "$out/long.txt" || status=1
    done
  done
fi
if [[ $what == ab ]]; then
  shift 2
  variants=("$@")
  (( ${#variants[@]} )) || variants=("$bin" "QWEN3_AGENT_CUDA_OVERLAP=0 $bin")
  model=/tmp/q8b
  [[ -d $model ]] || "$bin" synth --preset qwen3-8b --out "$model"
  for ((round = 1; round <= ${ROUNDS:-2}; round++)); do
    for variant in "${variants[@]}"; do
      prefix=${variant%% -- *}
      flags=; [[ $variant == *" -- "* ]] && flags=${variant#* -- }
      bash -c "$prefix bench --device cuda --model $model --depth ${DEPTH:-512} --gen-tokens ${GEN:-128} \
        --context-length 4096 $flags" 2>&1 | grep -E '^load' | sed "s|^|[$variant] |" | tee -a "$out/ab.txt" \
        || status=1
    done
  done
fi
exit $status
