"""The fp8 KV cache (`--kv-cache fp8`, kv_cache.cuh) on the GPU machine, beside the f16 cache: how far its
logits move and whether its readers agree with each other.

- Each parity fixture whose head_dim the fp8 cache takes (a multiple of 16): logits against transformers'
  reference with the f16 cache and with the fp8 one, and teacher-forced greedy ids.
- Long prefills (4,100 random ids: flash attention reading fp8 tiles) against the CPU engine, in one forward
  and in two (the second after a cached prefix of 2,777); the two fp8 runs must agree with each other as
  closely as the f16 ones do (both read the same quantized rows).
- The decode kernel against the prefill kernel: greedy ids decoded after a 9,000-token prompt, fed back
  through one prefill, should be that prefill's argmax at every position; decode (int8 activations) and
  prefill (f16) round differently, so on a deep random model some near-ties flip even with the f16 cache:
  the fp8 cache must agree as often as the f16 one does. Its ids against the f16 cache's: information.
- The demo model's greedy answer with each cache (information: how many ids agree).

    python3 scripts/cuda/check_fp8.py BINARY OUT_DIR      (exit 1 on any failure)
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BIN, OUT = sys.argv[1], Path(sys.argv[2])
OUT.mkdir(parents=True, exist_ok=True)
# Relative L2 bound of the fp8 cache's logits (against transformers, or the CPU engine): e4m3 keeps 3
# mantissa bits, so each cached value moves by up to 1/16 of itself. Measured (H100, BENCHMARKS.md):
# 0.9-3.7e-2 on the fixtures and the demo model, 6.8e-2 on the 28-layer random 0.6B; a reader's bug (a
# wrong scale, row or tile) moves logits by their own size.
FP8_LIMIT = 1e-1
# Two fp8 runs over the same rows (one forward, or two after a cached prefix) differ only by f16
# summation order, as two f16 runs do (check.py's bound).
SAME_ROWS_LIMIT = 2e-3
failures = []


def run(*args):
    done = subprocess.run([BIN, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def logits(model, ids, cache, device="cuda", split_at=None):
    path = OUT / f"{model.name}-{device}-{cache}.npy"
    split = ["--split-at", str(split_at)] if split_at else []
    run("logits", "--device", device, "--kv-cache", cache, "--model", str(model), "--ids", ",".join(map(str, ids)),
        "--out", str(path), *split)
    return np.load(path).astype(np.float64)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def common(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def head_dim(model):
    config = json.loads((model / "config.json").read_text())
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


fixtures = [f for f in sorted((ROOT / "tests/fixtures/parity").iterdir()) if head_dim(f) % 16 == 0]
print(f"{'fixture':<16} {'f16 vs transformers':>20} {'fp8 vs transformers':>20} {'fp8 greedy ids':>15}")
for fixture in fixtures:
    ref = json.loads((fixture / "ref.json").read_text())
    ids, greedy = ref["ids"], ref["greedy_ids"]
    theirs = np.load(fixture / "ref_logits.npy").astype(np.float64)
    e16, e8 = rel(logits(fixture, ids, "f16"), theirs), rel(logits(fixture, ids, "fp8"), theirs)
    forced = logits(fixture, ids + greedy[:-1], "fp8")
    same = sum(a == b for a, b in zip(forced[len(ids) - 1:].argmax(axis=1).tolist(), greedy))
    print(f"{fixture.name:<16} {e16:>20.2e} {e8:>20.2e} {same:>12}/{len(greedy)}")
    if not e8 < FP8_LIMIT:
        failures.append(f"fixture {fixture.name}")

print(f"{'long prefill':<16} {'f16 vs CPU':>11} {'fp8 vs CPU':>11} {'fp8 split vs one':>17}")
qwen06 = OUT / "qwen3-0.6b-synth"
if not qwen06.exists():
    run("synth", "--preset", "qwen3-0.6b", "--out", str(qwen06), "--no-tokenizer")
demo = ROOT / "models/qwen3-agent-demo"
rng = np.random.default_rng(7)
for model in [f for f in fixtures if f.name.startswith("awq")] + [demo, qwen06]:
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    ids = rng.integers(0, vocab, 4100).tolist()
    cpu = logits(model, ids, "f16", device="cpu")
    e16 = rel(logits(model, ids, "f16"), cpu)
    one = logits(model, ids, "fp8")
    e8, split = rel(one, cpu), rel(logits(model, ids, "fp8", split_at=2777), one)
    print(f"{model.name:<16} {e16:>11.2e} {e8:>11.2e} {split:>17.2e}")
    if not (e8 < FP8_LIMIT and split < SAME_ROWS_LIMIT):
        failures.append(f"long prefill {model.name}")

print(f"{'long decode':<16} {'decode = prefill argmax, f16':>29} {'fp8':>5} {'fp8 ids as f16 cache':>21}")
for model in [f for f in fixtures if f.name.startswith("awq")] + [qwen06]:
    def decode_agreement(cache):
        out = run("bench", "--device", "cuda", "--kv-cache", cache, "--model", str(model), "--prompt-tokens", "9000",
                  "--gen-tokens", "32", "--context-length", "9100", "--json")
        result = json.loads(out.strip().splitlines()[-1])
        prompt, ids = result["prompt_ids"], result["token_ids"]
        # Row len(prompt) - 1 + i of the prompt plus the ids but the last predicts generated id i.
        forced = logits(model, prompt + ids[:-1], cache)[len(prompt) - 1:].argmax(axis=1).tolist()
        return sum(a == b for a, b in zip(forced, ids)), ids
    (agree16, f16_ids), (agree8, fp8_ids) = decode_agreement("f16"), decode_agreement("fp8")
    print(f"{model.name:<16} {agree16:>26}/{len(f16_ids)} {agree8:>2}/{len(fp8_ids)} "
          f"{common(fp8_ids, f16_ids):>18}/{len(f16_ids)}")
    if agree8 < agree16 - 2:
        failures.append(f"long decode {model.name}")

request = OUT / "demo-request.json"
request.write_text(json.dumps({
    "messages": [{"role": "system", "content": (ROOT / "scripts/demo/system_prompt.txt").read_text().strip()},
                 {"role": "user", "content": "What time is it in Tokyo?"}],
    "tools": [{"type": "function", "function": t} for t in json.loads((ROOT / "scripts/demo/tools.json").read_text())],
}))
gen = {cache: json.loads(run("generate", "--device", "cuda", "--kv-cache", cache, "--model", str(demo), "--messages",
                             str(request), "--max-new-tokens", "64", "--temperature", "0", "--json"))
       for cache in ["f16", "fp8"]}
a, b = gen["f16"]["token_ids"], gen["fp8"]["token_ids"]
print(f"demo model greedy answer: {common(a, b)} of {len(a)} f16-cache ids equal with the fp8 cache")
print("fp8 text:", json.dumps(gen["fp8"]["text"])[:300])

print("FAILED: " + ", ".join(failures) if failures else "all fp8 KV cache checks passed")
sys.exit(1 if failures else 0)
