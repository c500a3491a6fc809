"""Reads a model directory written by `qwen3-agent quantize` back into float tensors named as
transformers' Qwen3ForCausalLM names them, so training can continue from a committed demo model
(which is small enough to travel to the GPU machine, unlike a float export). Needs numpy and
safetensors only.

AutoAWQ GEMM layout: qweight [in, out/8] int32, column 8c+j in nibble UNPACK_NIBBLE[j]; qzeros
[in/group, out/8] packed alike; scales [in/group, out] f16; W[k][n] = (q - z) * s and y = x W, so the
torch weight is W transposed. The packed tied embedding (qwen3-agent's extension) is stored the same
way with in = hidden and out = vocab.
"""

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

UNPACK_NIBBLE = [0, 4, 1, 5, 2, 6, 3, 7]


def unpack(words):
    """[rows, cols/8] int32 words -> [rows, cols] values 0..15 in logical column order."""
    w = words.view(np.uint32)
    nibbles = [(w >> (4 * UNPACK_NIBBLE[j])) & 0xF for j in range(8)]
    return np.stack(nibbles, axis=-1).reshape(w.shape[0], w.shape[1] * 8).astype(np.float32)


def dequantize(qweight, qzeros, scales):
    q, z = unpack(qweight), unpack(qzeros)
    group = q.shape[0] // scales.shape[0]
    z = np.repeat(z, group, axis=0)
    s = np.repeat(scales.astype(np.float32), group, axis=0)
    return ((q - z) * s).T.copy()


def load_awq_model(model_dir):
    """{torch parameter name: float32 array} for every weight of the model."""
    tensors = {}
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        tensors.update(load_file(str(shard)))
    out = {}
    for name in list(tensors):
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            out[base + ".weight"] = dequantize(tensors[base + ".qweight"], tensors[base + ".qzeros"],
                                               tensors[base + ".scales"])
        elif not name.endswith((".qzeros", ".scales")):
            out[name] = tensors[name].astype(np.float32)
    return out


def config_of(model_dir):
    return json.loads((Path(model_dir) / "config.json").read_text())
