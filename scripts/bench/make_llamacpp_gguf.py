#!/usr/bin/env python3
"""Write a random-weight GGUF with the exact Qwen3-8B architecture (llama.cpp "qwen3").

Purpose: a llama.cpp CPU performance anchor when real weights can't be downloaded.
Weights are random Q4_0 blocks generated directly as bytes (fp16 scale + 16 bytes of
random nibbles per 32 weights), output.weight (lm_head) is F16 like the AWQ checkpoint's,
norms are F32 ~1.0. Tokenizer metadata comes from the real Qwen3 tokenizer.json.

Tensors are streamed to disk one at a time (peak RAM ~ size of output.weight, 1.2 GB).

Usage: python scripts/bench/make_llamacpp_gguf.py OUT.gguf [--tokenizer PATH] [--seed N]
(Copied from the team's shared llama.cpp anchor harness, bench/llamacpp/make_gguf.py.)
Needs: pip install gguf numpy
"""
import argparse
from pathlib import Path
import json
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

# Qwen3-8B config
N_LAYER = 36
N_CTX_TRAIN = 40960
N_EMBD = 4096
N_FF = 12288
N_HEAD = 32
N_HEAD_KV = 8
HEAD_DIM = 128
ROPE_THETA = 1_000_000.0
RMS_EPS = 1e-6
N_VOCAB = 151936
BOS, EOS, PAD = 151643, 151645, 151643

Q4_0_BLOCK = 32        # weights per block
Q4_0_BYTES = 18        # 2-byte fp16 scale + 16 bytes of nibbles
Q4_0_SCALE = 0.02


def tensor_plan():
    """(name, kind, numpy-order shape [rows=out, cols=in]) in file order."""
    plan = [("token_embd.weight", "q4_0", (N_VOCAB, N_EMBD))]
    q_dim, kv_dim = N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM
    for i in range(N_LAYER):
        p = f"blk.{i}."
        plan += [
            (p + "attn_norm.weight", "f32", (N_EMBD,)),
            (p + "attn_q.weight", "q4_0", (q_dim, N_EMBD)),
            (p + "attn_k.weight", "q4_0", (kv_dim, N_EMBD)),
            (p + "attn_v.weight", "q4_0", (kv_dim, N_EMBD)),
            (p + "attn_output.weight", "q4_0", (N_EMBD, q_dim)),
            (p + "attn_q_norm.weight", "f32", (HEAD_DIM,)),
            (p + "attn_k_norm.weight", "f32", (HEAD_DIM,)),
            (p + "ffn_norm.weight", "f32", (N_EMBD,)),
            (p + "ffn_gate.weight", "q4_0", (N_FF, N_EMBD)),
            (p + "ffn_up.weight", "q4_0", (N_FF, N_EMBD)),
            (p + "ffn_down.weight", "q4_0", (N_EMBD, N_FF)),
        ]
    plan += [
        ("output_norm.weight", "f32", (N_EMBD,)),
        ("output.weight", "f16", (N_VOCAB, N_EMBD)),
    ]
    return plan


def byte_shape(kind, shape):
    if kind == "q4_0":
        rows, cols = shape
        assert cols % Q4_0_BLOCK == 0
        return (rows, cols // Q4_0_BLOCK * Q4_0_BYTES), np.uint8
    if kind == "f16":
        return shape, np.float16
    return shape, np.float32


def make_q4_0(rng, shape):
    rows, cols = shape
    nb = cols // Q4_0_BLOCK
    out = np.empty((rows, nb, Q4_0_BYTES), dtype=np.uint8)
    out[..., 2:] = np.frombuffer(rng.bytes(rows * nb * 16), dtype=np.uint8).reshape(rows, nb, 16)
    out[..., :2] = np.frombuffer(np.array([Q4_0_SCALE], dtype="<f2").tobytes(), dtype=np.uint8)
    return out.reshape(rows, nb * Q4_0_BYTES)


def make_f16(rng, shape, std=0.02):
    out = np.empty(shape, dtype=np.float16)
    flat = out.reshape(-1)
    step = 1 << 24
    for s in range(0, flat.size, step):
        e = min(flat.size, s + step)
        flat[s:e] = rng.standard_normal(e - s, dtype=np.float32) * std
    return out


def make_norm(rng, shape):
    return (1.0 + 0.01 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)


def load_vocab(path):
    tj = json.load(open(path, encoding="utf-8"))
    model = tj["model"]
    assert model["type"] == "BPE"
    tokens = [None] * N_VOCAB
    types = [TokenType.NORMAL] * N_VOCAB
    for tok, idx in model["vocab"].items():
        tokens[idx] = tok
    for at in tj["added_tokens"]:
        tokens[at["id"]] = at["content"]
        types[at["id"]] = TokenType.CONTROL if at["special"] else TokenType.USER_DEFINED
    for i in range(N_VOCAB):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = TokenType.UNUSED  # as llama.cpp's convert_hf_to_gguf does for padding
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, types, merges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/qwen3-tokenizer/tokenizer.json"))
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()

    w = GGUFWriter(args.out, "qwen3")
    w.add_name("Qwen3-8B random-weight Q4_0 (perf anchor)")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(N_LAYER)
    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)

    tokens, types, merges = load_vocab(args.tokenizer)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_pad_token_id(PAD)
    w.add_add_bos_token(False)

    plan = tensor_plan()
    for name, kind, shape in plan:
        bshape, dt = byte_shape(kind, shape)
        nbytes = int(np.prod(bshape)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, bshape, np.dtype(dt), nbytes,
                          raw_dtype=GGMLQuantizationType.Q4_0 if kind == "q4_0" else None)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for i, (name, kind, shape) in enumerate(plan):
        if kind == "q4_0":
            t = make_q4_0(rng, shape)
        elif kind == "f16":
            t = make_f16(rng, shape)
        else:
            t = make_norm(rng, shape)
        w.write_tensor_data(t)
        total += t.nbytes
        del t
        if i % 55 == 0 or i == len(plan) - 1:
            print(f"[{time.time()-t0:6.1f}s] {i+1}/{len(plan)} {name} ({total/1e9:.2f} GB tensor data)", flush=True)
    w.close()
    print(f"wrote {args.out}: {len(plan)} tensors, {total} tensor bytes, {time.time()-t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
