//! Random checkpoints with the exact tensor names, shapes, dtypes and config of the published Qwen3 AWQ
//! models: what benchmarks and tests run on, since the real weights cannot be downloaded here.

use super::awq::pack_word;
use super::checkpoint::{LazyTensor, le_bytes, write_safetensors};
use crate::rng::Rng;
use anyhow::{Result, bail};
use half::f16;
use safetensors::Dtype;
use serde_json::{Value as Json, json};
use std::path::Path;

/// The published configs (AWQ, group 128), and a tiny one for tests.
pub fn preset_config(preset: &str) -> Result<Json> {
    let (hidden, inter, layers, heads, kv, head_dim, tied, group) = match preset {
        "qwen3-8b" => (4096, 12288, 36, 32, 8, 128, false, 128),
        "qwen3-0.6b" => (1024, 3072, 28, 16, 8, 128, true, 128),
        "tiny" => (32, 64, 2, 4, 2, 16, true, 32),
        other => bail!("unknown preset {other:?}: choose qwen3-8b, qwen3-0.6b or tiny"),
    };
    Ok(json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "rope_theta": 1000000.0,
        "rope_scaling": null,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": tied,
        "attention_bias": false,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "torch_dtype": "float16",
        "quantization_config": {
            "quant_method": "awq", "zero_point": true, "group_size": group, "bits": 4, "version": "gemm",
            "modules_to_not_convert": null
        }
    }))
}

pub fn generation_config() -> Json {
    json!({
        "bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
        "temperature": 0.6, "top_k": 20, "top_p": 0.95
    })
}

/// The tensors of a random AWQ checkpoint for `config`.
pub fn random_tensors(config: &Json, seed: u64) -> Result<Vec<LazyTensor>> {
    let get = |k: &str| {
        config[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| anyhow::anyhow!("config lacks {k}"))
    };
    let (h, inter, layers) = (
        get("hidden_size")?,
        get("intermediate_size")?,
        get("num_hidden_layers")?,
    );
    let (nh, nkv, hd, vocab) = (
        get("num_attention_heads")?,
        get("num_key_value_heads")?,
        get("head_dim")?,
        get("vocab_size")?,
    );
    let group = config["quantization_config"]["group_size"]
        .as_u64()
        .unwrap_or(128) as usize;
    let tied = config["tie_word_embeddings"].as_bool().unwrap_or(false);
    let embed_std = if h >= 1024 { 0.02 } else { 0.5 };
    let mut tensors = vec![f16_normal(
        "model.embed_tokens.weight",
        vec![vocab, h],
        embed_std,
        seed,
    )];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        tensors.push(norm(&format!("{p}.input_layernorm.weight"), h, seed));
        for (name, inf, outf) in [
            ("self_attn.q_proj", h, nh * hd),
            ("self_attn.k_proj", h, nkv * hd),
            ("self_attn.v_proj", h, nkv * hd),
            ("self_attn.o_proj", nh * hd, h),
            ("mlp.gate_proj", h, inter),
            ("mlp.up_proj", h, inter),
            ("mlp.down_proj", inter, h),
        ] {
            tensors.extend(awq_random(&format!("{p}.{name}"), inf, outf, group, seed));
        }
        tensors.push(norm(&format!("{p}.self_attn.q_norm.weight"), hd, seed));
        tensors.push(norm(&format!("{p}.self_attn.k_norm.weight"), hd, seed));
        tensors.push(norm(
            &format!("{p}.post_attention_layernorm.weight"),
            h,
            seed,
        ));
    }
    tensors.push(norm("model.norm.weight", h, seed));
    if !tied {
        tensors.push(f16_normal(
            "lm_head.weight",
            vec![vocab, h],
            0.02f32.max(1.0 / (h as f32).sqrt()),
            seed,
        ));
    }
    Ok(tensors)
}

fn f16_normal(name: &str, shape: Vec<usize>, std: f32, seed: u64) -> LazyTensor {
    let (n, key) = (shape.iter().product::<usize>(), name.to_string());
    LazyTensor {
        name: name.into(),
        dtype: Dtype::F16,
        shape,
        make: Box::new(move || {
            let mut rng = Rng::new(seed, &key);
            le_bytes(
                &(0..n)
                    .map(|_| f16::from_f32(rng.normal() * std))
                    .collect::<Vec<_>>(),
            )
        }),
    }
}

fn norm(name: &str, len: usize, seed: u64) -> LazyTensor {
    let key = name.to_string();
    LazyTensor {
        name: name.into(),
        dtype: Dtype::F16,
        shape: vec![len],
        make: Box::new(move || {
            let mut rng = Rng::new(seed, &key);
            le_bytes(
                &(0..len)
                    .map(|_| f16::from_f32(1.0 + 0.1 * rng.normal()))
                    .collect::<Vec<_>>(),
            )
        }),
    }
}

/// Random packed nibbles, zeros near the middle, and scales that give W a std of about 1/sqrt(in).
fn awq_random(prefix: &str, inf: usize, outf: usize, group: usize, seed: u64) -> Vec<LazyTensor> {
    let groups = inf / group;
    let scale = 1.0 / (4.6 * (inf as f32).sqrt());
    let (kq, kz, ks) = (
        format!("{prefix}.qweight"),
        format!("{prefix}.qzeros"),
        format!("{prefix}.scales"),
    );
    vec![
        LazyTensor {
            name: kq.clone(),
            dtype: Dtype::I32,
            shape: vec![inf, outf / 8],
            make: Box::new(move || {
                let mut rng = Rng::new(seed, &kq);
                le_bytes(
                    &(0..inf * outf / 8)
                        .map(|_| rng.next_u64() as u32)
                        .collect::<Vec<u32>>(),
                )
            }),
        },
        LazyTensor {
            name: kz.clone(),
            dtype: Dtype::I32,
            shape: vec![groups, outf / 8],
            make: Box::new(move || {
                let mut rng = Rng::new(seed, &kz);
                le_bytes(
                    &(0..groups * outf / 8)
                        .map(|_| pack_word(std::array::from_fn(|_| 6 + (rng.next_u64() % 4) as u8)))
                        .collect::<Vec<u32>>(),
                )
            }),
        },
        LazyTensor {
            name: ks.clone(),
            dtype: Dtype::F16,
            shape: vec![groups, outf],
            make: Box::new(move || {
                let mut rng = Rng::new(seed, &ks);
                le_bytes(
                    &(0..groups * outf)
                        .map(|_| {
                            f16::from_f32(
                                scale * (0.75 + 0.5 * (rng.next_u64() % 1000) as f32 / 1000.0),
                            )
                        })
                        .collect::<Vec<_>>(),
                )
            }),
        },
    ]
}

/// Writes a complete random model directory; `progress` as `write_safetensors`'.
pub fn write_random_model(
    out: &Path,
    config: &Json,
    seed: u64,
    tokenizer_dir: Option<&Path>,
    progress: &dyn Fn(u64, u64),
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(config)?,
    )?;
    std::fs::write(
        out.join("generation_config.json"),
        serde_json::to_string_pretty(&generation_config())?,
    )?;
    if let Some(dir) = tokenizer_dir {
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(dir.join(file), out.join(file))?;
        }
    }
    write_safetensors(out, random_tensors(config, seed)?, 4 << 30, progress)
}
