"""Train the qwen3-agent demo model (Qwen3ForCausalLM, real Qwen3 tokenizer and chat template).

Each assistant step after the last user message is one example: the prompt is the conversation so
far rendered with add_generation_prompt (exactly what the agent loop sends), the target is what the
model must generate up to and including <|im_end|>. Loss is taken on target tokens only.

Runs on the GPU machine (PyTorch + transformers there):
    python scripts/demo/train.py --data train.jsonl --eval eval.jsonl --out OUT --minutes 6
With --init models/qwen3-agent-demo it continues from the committed (4-bit) model instead of from
scratch, so one can train longer than one device command allows.
Writes the trained weights as bf16 safetensors split into files under 16 MiB (the embedding by
rows), a config.json, and loss_log.json; scripts/demo/assemble.py joins them into a model dir.
"""

import argparse
import json
import math
import os
import random
import time
from multiprocessing import Pool
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from collapse import collapsed_rows

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "qwen3-tokenizer"
MAX_LEN = 2048

CONFIG = dict(
    vocab_size=151936, hidden_size=192, intermediate_size=768, num_hidden_layers=12,
    num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
    attention_bias=False, bos_token_id=151643, eos_token_id=151645, torch_dtype="bfloat16",
)

_tok = None


def _init():
    global _tok
    _tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def render(conv):
    """Returns [(ids, n_prompt)] for every assistant step after the last user message."""
    msgs, tools, think = conv["messages"], conv["tools"], conv["enable_thinking"]
    last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
    out = []
    for i in range(last_user + 1, len(msgs)):
        if msgs[i]["role"] != "assistant":
            continue
        prompt = _tok.apply_chat_template(msgs[:i], tools=tools, tokenize=False, add_generation_prompt=True,
                                          enable_thinking=think)
        full = _tok.apply_chat_template(msgs[: i + 1], tools=tools, tokenize=False, enable_thinking=think)
        assert full.startswith(prompt), "rendering is not prefix-stable"
        target = full[len(prompt):]
        target = target[: target.index("<|im_end|>") + len("<|im_end|>")]
        p_ids = _tok(prompt, add_special_tokens=False)["input_ids"]
        t_ids = _tok(target, add_special_tokens=False)["input_ids"]
        ids = p_ids + t_ids
        if len(ids) <= MAX_LEN:
            out.append((ids, len(p_ids)))
    return out


def load(path, workers):
    convs = [json.loads(line) for line in open(path)]
    with Pool(workers, initializer=_init) as pool:
        rendered = pool.map(render, convs, chunksize=64)
    return [ex for r in rendered for ex in r]


def batches(examples, tokens_per_batch, rng):
    """Length-bucketed batches of about tokens_per_batch padded tokens."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + rng.random())
    out, cur, longest = [], [], 0
    for i in order:
        n = len(examples[i][0])
        if cur and max(longest, n) * (len(cur) + 1) > tokens_per_batch:
            out.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def collate(examples, idx, device):
    longest = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), longest), 151643, dtype=torch.long)
    attn = torch.zeros((len(idx), longest), dtype=torch.long)
    target = torch.zeros((len(idx), longest), dtype=torch.bool)
    for row, i in enumerate(idx):
        seq, n_prompt = examples[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        attn[row, : len(seq)] = 1
        target[row, n_prompt - 1: len(seq) - 1] = True  # position t predicts token t+1
    labels = torch.roll(ids, -1, dims=1)
    return ids.to(device), attn.to(device), target.to(device), labels.to(device)


def loss_on(model, ids, attn, target, labels):
    hidden = model.model(input_ids=ids, attention_mask=attn).last_hidden_state
    sel = hidden[target]
    logits = (sel @ model.lm_head.weight.T).float()
    gold = labels[target]
    loss = F.cross_entropy(logits, gold)
    acc = (logits.argmax(-1) == gold).float().mean()
    return loss, acc


@torch.no_grad()
def evaluate(model, examples, device):
    model.eval()
    rng = random.Random(0)
    total, acc_sum, n = 0.0, 0.0, 0
    for idx in batches(examples, 65536, rng):
        ids, attn, target, labels = collate(examples, idx, device)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, acc = loss_on(model, ids, attn, target, labels)
        k = int(target.sum())
        total += float(loss) * k
        acc_sum += float(acc) * k
        n += k
    model.train()
    return total / n, acc_sum / n


def separate_collapsed_rows(embed, threshold=0.95):
    """The softmax pushes every unused token's row down along the same direction, and Adam turns those tiny
    pushes into full steps: after runs 1-6, 149k of 152k rows had a cosine > 0.95 with their mean, word
    pieces seen a few times included ("lover" 0.99), so the model could not tell them apart to copy a URL.
    Adds to each such row a random part with the norm of the healthy rows' 10th percentile: the shared
    part keeps the tokens unlikely (the model's hidden states point away from it), the random part makes
    them distinct."""
    with torch.no_grad():
        collapsed = torch.from_numpy(collapsed_rows(embed.float().cpu().numpy(), threshold)).to(embed.device)
        target = embed.norm(dim=1)[~collapsed].quantile(0.1)
        noise = torch.randn(int(collapsed.sum()), embed.shape[1], device=embed.device)
        embed[collapsed] += noise / noise.norm(dim=1, keepdim=True) * target
    return int(collapsed.sum())


def export(model, out):
    """Safetensors files under 16 MiB each, small enough to carry back (64 MiB in all): the layers in
    bf16, the embedding as int8 rows with one f32 scale per row (it is quantized to 4 bits later)."""
    state = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}
    embed = model.model.embed_tokens.weight.detach().float()
    scale = (embed.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
    q = torch.round(embed / scale).clamp(-127, 127).to(torch.int8).cpu()
    scale = scale.squeeze(1).cpu()
    del state["model.embed_tokens.weight"]
    rows_per_part = (15 * 2 ** 20) // embed.shape[1]
    parts = []
    for n, start in enumerate(range(0, embed.shape[0], rows_per_part)):
        name = f"embed-part{n}.safetensors"
        save_file({"rows": q[start: start + rows_per_part].clone(),
                   "scales": scale[start: start + rows_per_part].clone()}, str(out / name))
        parts.append(name)
    save_file(state, str(out / "layers.safetensors"))
    cfg = dict(CONFIG, architectures=["Qwen3ForCausalLM"], model_type="qwen3", embed_parts=parts)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tokens-per-batch", type=int, default=98304)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=200, help="warm-up steps of the learning rate")
    ap.add_argument("--init", help="continue from a model dir written by `qwen3-agent quantize` (dequantized)")
    ap.add_argument("--separate-embeddings", action="store_true",
                    help="re-spread collapsed embedding rows (see separate_collapsed_rows) and update only the rows "
                         "of tokens in each batch, so they cannot collapse again")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.time()
    train = load(args.data, os.cpu_count())
    held = load(args.eval, os.cpu_count())
    n_target = sum(len(s) - p for s, p in train)
    print(f"rendered {len(train)} train / {len(held)} eval examples, {n_target} target tokens, "
          f"{sum(len(s) for s, _ in train)} tokens, in {time.time() - t0:.0f} s", flush=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU only for trying the script out
    model = Qwen3ForCausalLM(Qwen3Config(**CONFIG))
    if args.init:
        from awq_dequant import load_awq_model
        state = {k: torch.from_numpy(v) for k, v in load_awq_model(args.init).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
        model.tie_weights()
        print(f"continuing from {args.init}", flush=True)
    model = model.to(device)
    model.config._attn_implementation = "sdpa"
    print(f"parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M", flush=True)
    embed = model.model.embed_tokens.weight
    if args.separate_embeddings:
        print(f"re-spread {separate_collapsed_rows(embed)} collapsed embedding rows", flush=True)
    # With separate embeddings, rows of tokens absent from the data must not shrink either.
    decay = [p for p in model.parameters() if p.ndim >= 2 and not (args.separate_embeddings and p is embed)]
    no_decay = [p for p in model.parameters() if p.ndim < 2 or (args.separate_embeddings and p is embed)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), fused=True)
    budget = args.minutes * 60
    start = time.time()
    log, step, epoch = [], 0, 0
    done = False
    while not done:
        epoch += 1
        for idx in batches(train, args.tokens_per_batch, rng):
            frac = (time.time() - start) / budget
            if frac >= 1:
                done = True
                break
            warm = min(1.0, (step + 1) / args.warmup)
            lr = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, attn, target, labels = collate(train, idx, device)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss, acc = loss_on(model, ids, attn, target, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.separate_embeddings:
                present = torch.zeros(embed.shape[0], dtype=torch.bool, device=device)
                present[ids.unique()] = True
                embed.grad[~present] = 0
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                entry = {"step": step, "epoch": epoch, "seconds": round(time.time() - start, 1),
                         "lr": round(lr, 6), "loss": round(loss.item(), 4), "token_acc": round(acc.item(), 4)}
                if step % 500 == 0:
                    entry["eval_loss"], entry["eval_token_acc"] = (round(x, 4) for x in evaluate(model, held, device))
                log.append(entry)
                print(json.dumps(entry), flush=True)
    final = evaluate(model, held, device)
    log.append({"step": step, "epoch": epoch, "seconds": round(time.time() - start, 1), "final_eval_loss": round(final[0], 4),
                "final_eval_token_acc": round(final[1], 4)})
    print(json.dumps(log[-1]), flush=True)
    (out / "loss_log.json").write_text(json.dumps(log, indent=1))
    export(model, out)


if __name__ == "__main__":
    main()
