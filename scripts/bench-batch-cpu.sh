#!/usr/bin/env bash
# Batched decoding on the CPU, side by side: our `bench --batch` on a `synth --preset qwen3-8b`
# checkpoint and llama.cpp's `llama-batched-bench` on a random Q4_0 GGUF of the same shape, alternating
# round by round, then the medians of aggregate decode per batch size and each side's gain over one
# sequence.
#
# Usage: scripts/bench-batch-cpu.sh [ROUNDS]     (default 2; each round runs both once)
#   BATCH           batch sizes (default 1,2,4,8)
#   PROMPT, GEN     tokens per sequence (default 128 and 16)
#   MODEL_DIR       synthetic AWQ checkpoint (default /tmp/q8b; written once, ~6 GB)
#   ANCHOR_DIR      llama.cpp build and GGUF from ../shared/bench/llamacpp/bench.sh (default
#                   /tmp/anchor_llamacpp); llama-batched-bench is built there on first use
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
BATCH=${BATCH:-1,2,4,8}
PROMPT=${PROMPT:-128}
GEN=${GEN:-16}
MODEL_DIR=${MODEL_DIR:-/tmp/q8b}
ANCHOR_DIR=${ANCHOR_DIR:-/tmp/anchor_llamacpp}
cargo build --release --quiet
BIN=target/release/qwen3-agent
[[ -f $MODEL_DIR/config.json ]] || $BIN synth --preset qwen3-8b --out "$MODEL_DIR"
GGUF=$ANCHOR_DIR/qwen3-8b-random-q4_0.gguf
[[ -f $GGUF ]] || RUNS=1 bash ../shared/bench/llamacpp/bench.sh >/dev/null
LLAMA=$ANCHOR_DIR/build/bin/llama-batched-bench
[[ -x $LLAMA ]] || PATH=$ANCHOR_DIR/venv/bin:$PATH cmake --build "$ANCHOR_DIR/build" -j2 --target llama-batched-bench
LARGEST=$(tr , '\n' <<< "$BATCH" | sort -n | tail -1)
OUT=$(mktemp -d)
for round in $(seq 1 "$ROUNDS"); do
  $BIN bench --model "$MODEL_DIR" --device cpu --threads 2 --prompt-tokens "$PROMPT" --gen-tokens "$GEN" \
    --batch "$BATCH" --json > "$OUT/ours$round.json"
  "$LLAMA" -m "$GGUF" -t 2 -c $(( (PROMPT + GEN) * LARGEST + 256 )) -b 2048 -ub 512 -npp "$PROMPT" -ntg "$GEN" \
    -npl "$BATCH" --output-format jsonl > "$OUT/llama$round.jsonl" 2>/dev/null
  echo "round $round done" >&2
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ours, llama = {}, {}
for i in range(1, rounds + 1):
    for b in json.load(open(f"{out}/ours{i}.json"))["batches"]:
        ours.setdefault(b["sequences"], []).append(b["decode_tok_per_s"])
    for line in open(f"{out}/llama{i}.jsonl"):
        if line.startswith("{"):
            r = json.loads(line)
            llama.setdefault(r["pl"], []).append(r["speed_tg"])
m = lambda xs: statistics.median(xs)
base_o, base_l = m(ours[min(ours)]), m(llama[min(llama)])
print("sequences | ours decode tok/s (all) | gain vs 1 | llama.cpp decode tok/s (all) | gain vs 1 | ours / llama.cpp")
for n in sorted(ours):
    o, l = m(ours[n]), m(llama.get(n, [float("nan")]))
    print(f"{n:>9} | {o:8.2f} ({', '.join(f'{x:.2f}' for x in ours[n])}) | {o / base_o:.2f}x | "
          f"{l:8.2f} ({', '.join(f'{x:.2f}' for x in llama.get(n, []))}) | {l / base_l:.2f}x | {o / l:.2f}x")
PY
