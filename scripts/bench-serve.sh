#!/usr/bin/env bash
# Serving benchmark beside llama.cpp's llama-server (CPU by default): time to first token and aggregate
# tok/s under 1, 4 and 8 concurrent streaming clients (scripts/bench/serve_client.py, the same client
# for both), our `serve` on a `synth --preset qwen3-8b` checkpoint and llama-server on the random Q4_0
# GGUF of the same shape. The servers run one after the other (never both in memory at once).
#
# Usage: scripts/bench-serve.sh
#   CLIENTS         concurrency levels (default "1 4 8")
#   MAX_TOKENS      tokens per answer (default 16); PROMPT_WORDS prompt length in words (default 24,
#                   ~30 tokens); REQUESTS requests per client per level (default 1)
#   SERVE_ARGS      extra `qwen3-agent serve` flags (say `--parallel 8` once batching exists)
#   LLAMA_ARGS      extra llama-server flags (default `-np 8`: 8 slots, continuous batching)
#   MODEL_DIR       synthetic AWQ checkpoint (default /tmp/q8b; written once, ~6 GB)
#   LLAMACPP_BENCH  the llama.cpp harness that builds llama.cpp and the GGUF on first use (default
#                   ../shared/bench/llamacpp/bench.sh); llama-server is then built in its build dir
#   ANCHOR_DIR      where that harness keeps its build and model (default /tmp/anchor_llamacpp)
#   ROUNDS          rounds, each ours then llama-server (default 2: the machines are noisy, so
#                   only rows measured in alternation are compared)
#   BIN, SERVER, GGUF  a qwen3-agent binary, a llama-server and its GGUF already built (then nothing is
#                   built; the GPU machine runs it so: BIN=… SERVER=… GGUF=… SERVE_ARGS="--device cuda"
#                   LLAMA_ARGS="-ngl 99 -fa on -np 8" THREADS=16 scripts/bench-serve.sh)
#   THREADS         llama-server's -t (default 2, the CPU kind's cores)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1 4 8}
MAX_TOKENS=${MAX_TOKENS:-16}
PROMPT_WORDS=${PROMPT_WORDS:-24}
REQUESTS=${REQUESTS:-1}
ROUNDS=${ROUNDS:-2}
SERVE_ARGS=${SERVE_ARGS:-}
LLAMA_ARGS=${LLAMA_ARGS:--np 8}
MODEL_DIR=${MODEL_DIR:-/tmp/q8b}
LLAMACPP_BENCH=${LLAMACPP_BENCH:-../shared/bench/llamacpp/bench.sh}
ANCHOR_DIR=${ANCHOR_DIR:-/tmp/anchor_llamacpp}
THREADS=${THREADS:-2}
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet
  BIN=target/release/qwen3-agent
fi
[[ -f $MODEL_DIR/config.json ]] || $BIN synth --preset qwen3-8b --out "$MODEL_DIR"
GGUF=${GGUF:-$ANCHOR_DIR/qwen3-8b-random-q4_0.gguf}
SERVER=${SERVER:-$ANCHOR_DIR/build/bin/llama-server}
if [[ ! -f $GGUF || ! -x $SERVER ]]; then
  [[ -f $GGUF && -x $ANCHOR_DIR/build/bin/llama-bench ]] || RUNS=1 bash "$LLAMACPP_BENCH" >/dev/null
  [[ -x $SERVER ]] || PATH=$ANCHOR_DIR/venv/bin:$PATH cmake --build "$ANCHOR_DIR/build" -j2 --target llama-server
fi
OUT=$(mktemp -d)
PID=
trap '[[ -n $PID ]] && kill $PID 2>/dev/null; true' EXIT

# Starts a server in the background ($PID) and waits until /health answers 200.
start() {
  "$@" >"$OUT/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then return; fi
    kill -0 $PID 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 1
  done
  echo "server on port $PORT did not become healthy" >&2; exit 1
}

stop() { kill $PID; wait $PID 2>/dev/null || true; PID=; }

client() {
  # shellcheck disable=SC2086
  python3 scripts/bench/serve_client.py "http://127.0.0.1:$PORT/v1" "$1" --clients $CLIENTS \
    --max-tokens "$MAX_TOKENS" --prompt-words "$PROMPT_WORDS" --requests-per-client "$REQUESTS" \
    --model bench
}

PORT=$(python3 -c "import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])")
for round in $(seq 1 "$ROUNDS"); do
  # shellcheck disable=SC2086
  start $BIN serve "$MODEL_DIR" --port $PORT --served-model-name bench $SERVE_ARGS
  client qwen3-agent | sed "s/^{/{\"round\": $round, /" | tee -a "$OUT/ours.jsonl"
  stop
  # shellcheck disable=SC2086
  start "$SERVER" -m "$GGUF" --host 127.0.0.1 --port $PORT -t "$THREADS" -c 8192 $LLAMA_ARGS
  client llama-server | sed "s/^{/{\"round\": $round, /" | tee -a "$OUT/llama.jsonl"
  stop
done

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = {}
for name in ("ours", "llama"):
    for line in open(f"{out}/{name}.jsonl"):
        r = json.loads(line)
        rows[(name, r["round"], r["clients"])] = r
print("| round | clients | qwen3-agent TTFT median (s) | llama-server TTFT median (s) | qwen3-agent tok/s | llama-server tok/s | ratio tok/s |")
print("|---|---|---|---|---|---|---|")
for rnd, clients in sorted({(r, c) for _, r, c in rows}):
    o, l = rows[("ours", rnd, clients)], rows[("llama", rnd, clients)]
    print(f"| {rnd} | {clients} | {o['ttft_s']['median']:.2f} | {l['ttft_s']['median']:.2f} | "
          f"{o['aggregate_tok_s']:.2f} | {l['aggregate_tok_s']:.2f} | "
          f"{o['aggregate_tok_s'] / l['aggregate_tok_s']:.2f}x |")
PY
