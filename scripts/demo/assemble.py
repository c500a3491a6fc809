"""Join what train.py exported (int8 embedding parts + bf16 layers) into an f32 Hugging Face model dir
that `qwen3-agent quantize` reads. Needs numpy and safetensors only (no torch).

    python scripts/demo/assemble.py RAW_DIR target/demo-f32
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "tests" / "fixtures" / "qwen3-tokenizer"


def read_safetensors(path):
    """Reads every tensor as numpy, converting bf16 (which numpy lacks) to f32."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8: 8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        raw = body[start:end]
        if meta["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype={"I8": np.int8, "F32": np.float32, "F16": np.float16}[meta["dtype"]])
        out[name] = arr.reshape(meta["shape"])
    return out


def main():
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((raw / "config.json").read_text())
    parts = config.pop("embed_parts")
    rows = []
    for part in parts:
        t = read_safetensors(raw / part)
        rows.append(t["rows"].astype(np.float32) * t["scales"][:, None])
    tensors = {k: v.astype(np.float32) for k, v in read_safetensors(raw / "layers.safetensors").items()}
    tensors["model.embed_tokens.weight"] = np.concatenate(rows)
    config["torch_dtype"] = "float32"
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                  "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, out / name)
    print(f"wrote {out}: {sum(v.size for v in tensors.values()) / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
