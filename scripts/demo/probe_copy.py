"""Why a demo model copies a URL or not: the probability and rank it gives each token of a fetch call for
the URL (teacher-forced, one `qwen3-agent logits` pass, thinking off), and how collapsed its embedding is.

    python scripts/demo/probe_copy.py MODEL_DIR URL... [--bin target/release/qwen3-agent]

Prints, per URL, token:probability, with (rank, top token) where the token is not the model's first choice;
then the share of embedding rows pointing the way of their mean (see the model card's diagnosis).
Needs transformers (tokenizer only) and numpy; reads the model through our own engine.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from collapse import collapsed_rows

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def call_ids(tok, url):
    system = (HERE / "system_prompt.txt").read_text().strip()
    tools = json.loads((HERE / "tools.json").read_text())
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"Tell me what {url} is about."}]
    prompt = tok.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True,
                                     enable_thinking=False)
    target = '<tool_call>\n{"name": "fetch", "arguments": {"url": "' + url + '"}}\n</tool_call>'
    return tok(prompt, add_special_tokens=False)["input_ids"], tok(target, add_special_tokens=False)["input_ids"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "qwen3-agent"))
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(ROOT / "tests" / "fixtures" / "qwen3-tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        for url in args.urls:
            prompt, target = call_ids(tok, url)
            ids = prompt + target
            out = Path(tmp) / "logits.npy"
            subprocess.run([args.bin, "logits", "--model", args.model, "--out", str(out),
                            "--ids", ",".join(map(str, ids))], check=True, capture_output=True)
            logits = np.load(out).astype(np.float64)
            shown = []
            for i in range(len(prompt), len(ids)):
                p = np.exp(logits[i - 1] - logits[i - 1].max())
                p /= p.sum()
                rank = int((p > p[ids[i]]).sum())
                cell = f"{tok.decode([ids[i]])!r}:{p[ids[i]]:.2f}"
                shown.append(cell if rank == 0 else f"{cell}(r{rank},{tok.decode([int(p.argmax())])!r})")
            start = next(i for i, s in enumerate(shown) if s.startswith("'http'"))
            print(url, " ".join(shown[start:]))
    table = tied_embedding(args.model)
    share = float(collapsed_rows(table).mean())
    print(f"embedding rows with cosine > 0.95 to the common direction: {share:.1%} of {len(table)}")


def tied_embedding(model_dir):
    """The [vocab][hidden] embedding of a model written by `qwen3-agent quantize` (dense or AWQ-packed)."""
    sys.path.insert(0, str(HERE))
    from awq_dequant import load_awq_model
    return load_awq_model(model_dir)["model.embed_tokens.weight"].astype(np.float32)


if __name__ == "__main__":
    main()
