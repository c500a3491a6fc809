#!/usr/bin/env bash
# Side-by-side CPU benchmark on the Qwen3-8B-AWQ shape: our engine on a `synth --preset qwen3-8b`
# checkpoint and llama.cpp's llama-bench on a random Q4_0 GGUF of the same shape (F16 lm_head),
# alternating run by run so both see the same machine state, then the medians and the ratio.
#
# Usage: scripts/bench-cpu.sh [ROUNDS]          (default 3; each round runs both once)
#   MODEL_DIR       synthetic AWQ checkpoint (default /tmp/q8b; written once, ~6 GB, ~30 s)
#   LLAMACPP_BENCH  the llama.cpp harness that builds llama-bench and the GGUF on first use
#                   (default ../shared/bench/llamacpp/bench.sh; ~10 min on 2 cores the first time)
#   ANCHOR_DIR      where that harness keeps its build and model (default /tmp/anchor_llamacpp)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MODEL_DIR=${MODEL_DIR:-/tmp/q8b}
LLAMACPP_BENCH=${LLAMACPP_BENCH:-../shared/bench/llamacpp/bench.sh}
ANCHOR_DIR=${ANCHOR_DIR:-/tmp/anchor_llamacpp}
cargo build --release --quiet
BIN=target/release/qwen3-agent
[[ -f $MODEL_DIR/config.json ]] || $BIN synth --preset qwen3-8b --out "$MODEL_DIR"
LLAMA=$ANCHOR_DIR/build/bin/llama-bench
GGUF=$ANCHOR_DIR/qwen3-8b-random-q4_0.gguf
[[ -x $LLAMA && -f $GGUF ]] || RUNS=1 bash "$LLAMACPP_BENCH" >/dev/null
OUT=$(mktemp -d)
for round in $(seq 1 "$ROUNDS"); do
  $BIN bench --model "$MODEL_DIR" --prompt-tokens 128 --gen-tokens 32 --json > "$OUT/ours$round.json"
  "$LLAMA" -m "$GGUF" -p 128 -n 32 -t 2 -r 1 -o json > "$OUT/llama$round.json" 2>/dev/null
  echo "round $round done" >&2
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ours = [json.load(open(f"{out}/ours{i}.json")) for i in range(1, rounds + 1)]
llama = [json.load(open(f"{out}/llama{i}.json")) for i in range(1, rounds + 1)]
def ll(kind):
    return [next(r["avg_ts"] for r in run if (r["n_prompt"] if kind == "pp" else r["n_gen"]) and not (r["n_gen"] if kind == "pp" else r["n_prompt"])) for run in llama]
o_pp, o_tg = [r["prefill_tok_per_s"] for r in ours], [r["decode_tok_per_s"] for r in ours]
l_pp, l_tg = ll("pp"), ll("tg")
f = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
print(f"qwen3-agent prefill 128: {f(o_pp)} (median {statistics.median(o_pp):.2f}); decode 32: {f(o_tg)} (median {statistics.median(o_tg):.2f}); peak RSS {max(r['peak_rss_gb'] for r in ours):.2f} GB")
print(f"llama.cpp   prefill 128: {f(l_pp)} (median {statistics.median(l_pp):.2f}); decode 32: {f(l_tg)} (median {statistics.median(l_tg):.2f})")
print(f"ratio ours/llama.cpp (medians): prefill {statistics.median(o_pp)/statistics.median(l_pp):.2f}x, decode {statistics.median(o_tg)/statistics.median(l_tg):.2f}x")
PY
