#!/usr/bin/env bash
# Side-by-side CPU benchmark on the Qwen3-8B-AWQ shape: our engine on a `synth --preset qwen3-8b`
# checkpoint, then llama.cpp's llama-bench on a random Q4_0 GGUF of the same shape (F16 lm_head), in the
# same run so both see the same machine state.
#
# Usage: scripts/bench-cpu.sh [PROMPT_TOKENS [GEN_TOKENS]]
#   MODEL_DIR    where the synthetic AWQ checkpoint lives (default /tmp/q8b; written once, ~6 GB, ~30 s)
#   LLAMACPP_BENCH  the llama.cpp harness (default ../shared/bench/llamacpp/bench.sh; builds llama.cpp
#                   from the llama-cpp-python sdist on first use, ~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT=${1:-128}
GEN=${2:-32}
MODEL_DIR=${MODEL_DIR:-/tmp/q8b}
LLAMACPP_BENCH=${LLAMACPP_BENCH:-../shared/bench/llamacpp/bench.sh}
cargo build --release --quiet
BIN=target/release/qwen3-agent
[[ -f $MODEL_DIR/config.json ]] || $BIN synth --preset qwen3-8b --out "$MODEL_DIR"
echo "== qwen3-agent: bench --model $MODEL_DIR --prompt-tokens $PROMPT --gen-tokens $GEN (all cores)"
$BIN bench --model "$MODEL_DIR" --prompt-tokens "$PROMPT" --gen-tokens "$GEN" --agent-rounds
echo "== llama.cpp: llama-bench -p 128 -n 32 -t 2 (Q4_0 linears, F16 lm_head)"
RUNS=${RUNS:-1} bash "$LLAMACPP_BENCH"
