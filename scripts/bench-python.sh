#!/usr/bin/env bash
# Python sandbox timings with the cached compiled module: module load, session start, a trivial cell
# (several times), import numpy+pandas, a matplotlib plot. Needs `qwen3-agent setup python` first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/qwen3-agent}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo 'x = 1' > "$dir/first.py"
echo 'x + 1' > "$dir/trivial.py"
echo 'import numpy, pandas' > "$dir/import_numpy_pandas.py"
printf 'import matplotlib.pyplot as plt\nplt.plot(range(100), [i * i for i in range(100)])\nNone\n' > "$dir/plot.py"
for round in 1 2 3; do
  echo "round $round"
  (cd "$dir" && "$OLDPWD/$BIN" python --timings first.py trivial.py trivial.py trivial.py import_numpy_pandas.py plot.py >/dev/null)
done
