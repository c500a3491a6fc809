#!/usr/bin/env python3
"""Reference logits and greedy ids from transformers' Qwen3ForCausalLM for the parity fixtures.

For each fixture directory under ROOT (default tests/fixtures/parity):
  - AWQ fixtures (written by `qwen3-agent synth`): qweight/qzeros/scales are dequantized per the AutoAWQ
    GEMM spec (W[k][n] = (q - z) * s, nibble order [0,4,1,5,2,6,3,7]) into fp32 nn.Linear weights;
  - a directory named dense-*: created here with random weights and saved with save_pretrained (bf16),
    then reloaded, so the reference uses exactly the stored weights.
Writes ref_logits.npy (float32 [n_ids, vocab]) and ref.json ({"ids", "greedy_ids"}) into each directory.
Runs on CPU or GPU in fp32 with eager attention. Needs torch, transformers, safetensors, numpy.
"""
import json
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import Qwen3Config, Qwen3ForCausalLM

REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
IDS = [7, 301, 42, 99, 5, 511, 260, 13, 77, 400, 2, 188, 63, 450, 321, 17, 88, 129, 3, 256, 500, 64, 31, 11]


def unpack(packed):
    """[rows, cols/8] int32 -> [rows, cols] int (logical column order)."""
    p = packed.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.tensor([4 * r for r in REVERSE_ORDER], dtype=torch.int64)
    return ((p.unsqueeze(-1) >> shifts) & 0xF).reshape(p.shape[0], -1)


def dequantize(qweight, qzeros, scales, group):
    q = unpack(qweight).float()
    z = unpack(qzeros).float().repeat_interleave(group, dim=0)
    s = scales.float().repeat_interleave(group, dim=0)
    return ((q - z) * s).T.contiguous()  # nn.Linear layout [out, in]


def load_awq_model(d):
    cfg_json = json.loads((d / "config.json").read_text())
    group = cfg_json["quantization_config"]["group_size"]
    cfg_json = {k: v for k, v in cfg_json.items() if k != "quantization_config"}
    config = Qwen3Config(**cfg_json)
    config._attn_implementation = "eager"
    model = Qwen3ForCausalLM(config).float().eval()
    tensors = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    state = {}
    for name, t in tensors.items():
        if name.endswith(".qweight"):
            prefix = name[: -len(".qweight")]
            state[prefix + ".weight"] = dequantize(t, tensors[prefix + ".qzeros"], tensors[prefix + ".scales"], group)
        elif name.endswith(".qzeros") or name.endswith(".scales"):
            continue
        else:
            state[name] = t.float()
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model


def make_dense(d):
    torch.manual_seed(0)
    config = Qwen3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=24, vocab_size=512, max_position_embeddings=256,
                         tie_word_embeddings=False, rms_norm_eps=1e-6, rope_theta=10000.0)
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    model.to(torch.bfloat16).save_pretrained(str(d), safe_serialization=True)
    reloaded = Qwen3ForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32, attn_implementation="eager")
    return reloaded.eval()


@torch.no_grad()
def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    (root / "dense-bf16").mkdir(exist_ok=True)
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        model = make_dense(d) if d.name.startswith("dense") else load_awq_model(d)
        model = model.to(device)
        ids = torch.tensor([IDS], device=device)
        logits = model(ids).logits[0].float().cpu().numpy()
        np.save(d / "ref_logits.npy", logits.astype(np.float32))
        seq = list(IDS)
        for _ in range(32):
            out = model(torch.tensor([seq], device=device)).logits[0, -1]
            seq.append(int(out.argmax()))
        (d / "ref.json").write_text(json.dumps({"ids": IDS, "greedy_ids": seq[len(IDS):], "device": device,
                                                "torch": torch.__version__}) + "\n")
        print(d.name, logits.shape, "greedy", seq[len(IDS):][:8], "...")


if __name__ == "__main__":
    main()
