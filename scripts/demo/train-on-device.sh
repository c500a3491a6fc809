#!/usr/bin/env bash
# The demo model's whole GPU recipe in one command, as run on the lent GPU machine (PyTorch and
# transformers there, no internet): generate the data (seeded, in parallel), train, export.
# Usage: scripts/demo/train-on-device.sh OUT_DIR [TRAIN_MINUTES [FIRST_SEED [INIT_MODEL_DIR [train.py options]]]]
# (INIT_MODEL_DIR continues from a quantized model, e.g. models/qwen3-agent-demo; use fresh seeds then.)
# DATA_PARTS (default 6) is the number of 20,000-conversation parts generated, one seed each.
# Then, here: python scripts/demo/assemble.py OUT_DIR target/demo-f32 &&
#   qwen3-agent quantize target/demo-f32 models/qwen3-agent-demo --group-size 64 --max-shard-mib 15 --quantize-embeddings
set -euo pipefail
out=${1:?usage: train-on-device.sh OUT_DIR [TRAIN_MINUTES]}
minutes=${2:-6.3}
first_seed=${3:-1}
init=${4:+--init $4}
data=$(mktemp -d)
here=$(dirname "$0")
mkdir -p "$out"
for seed in $(seq "$first_seed" $((first_seed + ${DATA_PARTS:-6} - 1))); do
  python "$here/gen_data.py" --split train --count 20000 --seed "$seed" > "$data/train-$seed.jsonl" &
done
python "$here/gen_data.py" --split eval --count 1500 --seed 1000 > "$data/eval.jsonl" &
wait
cat "$data"/train-*.jsonl > "$data/train.jsonl"
python "$here/check_heldout.py" "$data/train.jsonl" "$here/../../tests/fixtures/demo/eval_cases.jsonl" | tee "$out/heldout_check.txt"
python "$here/train.py" --data "$data/train.jsonl" --eval "$data/eval.jsonl" --out "$out" --minutes "$minutes" $init "${@:5}"
