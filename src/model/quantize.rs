//! Round-to-nearest 4-bit quantization into the AutoAWQ GEMM format. This is RTN, not AWQ's
//! activation-aware scale search; the written config says so.

use super::awq::pack_word;
use super::checkpoint::{LazyTensor, le_bytes, write_safetensors};
use super::config::Qwen3Config;
use super::weights::Weights;
use anyhow::{Context, Result, bail};
use half::f16;
use safetensors::Dtype;
use std::path::Path;
use std::sync::Arc;

const QUANTIZED: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Quantizes W ([out, in], nn.Linear layout) per group of `group` input features.
/// Returns (qweight [in, out/8], qzeros [in/group, out/8], scales [in/group, out]).
/// The shape must be packable (see [`packable`]) and `w` hold `outf × inf` values: a caller's bug
/// otherwise, so it panics saying which; `quantize_dir` checks checkpoints before calling it.
pub fn quantize_rtn(
    w: &[f32],
    outf: usize,
    inf: usize,
    group: usize,
) -> (Vec<u32>, Vec<u32>, Vec<f16>) {
    if let Err(why) = packable(outf, inf, group) {
        panic!("quantize_rtn: {why}");
    }
    assert_eq!(
        w.len(),
        outf * inf,
        "quantize_rtn: W holds {} values, not {outf}×{inf}",
        w.len()
    );
    let groups = inf / group;
    let mut scales = vec![f16::ZERO; groups * outf];
    let mut zeros = vec![0u8; groups * outf];
    let mut q = vec![0u8; inf * outf];
    for n in 0..outf {
        let row = &w[n * inf..(n + 1) * inf];
        for g in 0..groups {
            let block = &row[g * group..(g + 1) * group];
            let (min, max) = block
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let scale = f16::from_f32((max - min).max(1e-5) / 15.0);
            let s = scale.to_f32();
            let zero = (-(min / s).round()).clamp(0.0, 15.0);
            scales[g * outf + n] = scale;
            zeros[g * outf + n] = zero as u8;
            for (k, &v) in block.iter().enumerate() {
                q[(g * group + k) * outf + n] = ((v / s).round() + zero).clamp(0.0, 15.0) as u8;
            }
        }
    }
    let pack = |values: &[u8], rows: usize| -> Vec<u32> {
        (0..rows * outf / 8)
            .map(|i| pack_word(std::array::from_fn(|j| values[i * 8 + j])))
            .collect()
    };
    (pack(&q, inf), pack(&zeros, groups), scales)
}

/// Whether an [out, in] matrix can be packed with `group` input features per scale: the group is a
/// positive multiple of 8 (what the loader accepts, `AwqConfig`) dividing `in`, and `out` is a
/// multiple of 8 (eight 4-bit values per packed word).
pub fn packable(outf: usize, inf: usize, group: usize) -> Result<(), String> {
    if group == 0 || !group.is_multiple_of(8) {
        return Err(format!(
            "group size {group} is not a positive multiple of 8"
        ));
    }
    if !inf.is_multiple_of(group) {
        return Err(format!(
            "{inf} input features are not a multiple of the group size {group}"
        ));
    }
    if !outf.is_multiple_of(8) {
        return Err(format!("{outf} output features are not a multiple of 8"));
    }
    Ok(())
}

/// What `quantize_dir` writes.
pub struct QuantizeOptions {
    /// Input features per scale and zero point.
    pub group_size: usize,
    /// Largest safetensors shard in bytes.
    pub max_shard_bytes: usize,
    /// Also pack the tied embedding (see `AwqConfig::quantized_embeddings`).
    pub embeddings: bool,
}

/// Quantizes an unquantized Qwen3 checkpoint directory into `out`; `progress` as `write_safetensors`'.
pub fn quantize_dir(
    input: &Path,
    out: &Path,
    options: &QuantizeOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<()> {
    let QuantizeOptions {
        group_size: group,
        max_shard_bytes,
        embeddings,
    } = *options;
    if group == 0 || !group.is_multiple_of(8) {
        bail!(
            "--group-size {group}: the group size must be a positive multiple of 8 (AutoAWQ uses 128)"
        );
    }
    if max_shard_bytes == 0 {
        bail!("the largest shard must hold at least one byte");
    }
    let config = Qwen3Config::load(input)?;
    if config.quantization_config.is_some() {
        bail!(
            "{} is already quantized; quantize needs an fp16/bf16/fp32 checkpoint",
            input.display()
        );
    }
    if embeddings && !config.tie_word_embeddings {
        bail!(
            "--quantize-embeddings needs tie_word_embeddings: the packed table is also the output layer"
        );
    }
    let mut config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(input.join("config.json"))?)?;
    config_json["quantization_config"] = serde_json::json!({
        "quant_method": "awq", "zero_point": true, "group_size": group, "bits": 4, "version": "gemm",
        "modules_to_not_convert": null, "quantized_embeddings": embeddings
    });
    config_json["torch_dtype"] = "float16".into();
    config_json["qwen3_agent_quantization"] =
        "round-to-nearest 4-bit, group 128, in the AutoAWQ GEMM format (no activation-aware scale search)"
            .replace("128", &group.to_string())
            .into();
    let weights = Arc::new(Weights::open(input)?);
    let mut tensors = Vec::new();
    for name in weights.names() {
        let is_quantized = QUANTIZED
            .iter()
            .any(|q| name.ends_with(&format!("{q}.weight")))
            || (embeddings && name == "model.embed_tokens.weight");
        let shape = weights.shape(&name).context("tensor vanished")?.to_vec();
        // Checked here, before anything is written, so the writer's lazy reads below cannot fail.
        let dtype = weights.get(&name, &shape)?.dtype;
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            bail!("{name} has dtype {dtype:?}; quantize reads only f32, f16 and bf16 tensors");
        }
        if is_quantized {
            let &[outf, inf] = shape.as_slice() else {
                bail!(
                    "{name} has shape {shape:?}: only 2-D [out, in] linear weights can be quantized"
                );
            };
            if let Err(why) = packable(outf, inf, group) {
                bail!("{name} (shape {shape:?}) cannot be packed: {why}");
            }
            let prefix = name.trim_end_matches(".weight").to_string();
            let quantized = Arc::new(std::sync::OnceLock::new());
            let compute = {
                let (weights, name) = (weights.clone(), name.clone());
                move || -> Arc<(Vec<u32>, Vec<u32>, Vec<f16>)> {
                    let w = weights
                        .get(&name, &[outf, inf])
                        .and_then(|t| t.to_f32())
                        .expect("shape and dtype checked before writing");
                    Arc::new(quantize_rtn(&w, outf, inf, group))
                }
            };
            let parts: [(&str, Dtype, Vec<usize>); 3] = [
                ("qweight", Dtype::I32, vec![inf, outf / 8]),
                ("qzeros", Dtype::I32, vec![inf / group, outf / 8]),
                ("scales", Dtype::F16, vec![inf / group, outf]),
            ];
            for (i, (suffix, dtype, shape)) in parts.into_iter().enumerate() {
                let (cell, compute) = (quantized.clone(), compute.clone());
                tensors.push(LazyTensor {
                    name: format!("{prefix}.{suffix}"),
                    dtype,
                    shape,
                    make: Box::new(move || {
                        let q: &Arc<(Vec<u32>, Vec<u32>, Vec<f16>)> = cell.get_or_init(&compute);
                        match i {
                            0 => le_bytes(&q.0),
                            1 => le_bytes(&q.1),
                            _ => le_bytes(&q.2),
                        }
                    }),
                });
            }
        } else {
            let (weights, key) = (weights.clone(), name.clone());
            let shape_for_get = shape.clone();
            tensors.push(LazyTensor {
                name,
                dtype: Dtype::F16,
                shape,
                make: Box::new(move || {
                    let values = weights
                        .get(&key, &shape_for_get)
                        .and_then(|t| t.to_f32())
                        .expect("shape and dtype checked before writing");
                    le_bytes(&values.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>())
                }),
            });
        }
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config_json)?,
    )?;
    for file in [
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        if input.join(file).is_file() {
            std::fs::copy(input.join(file), out.join(file))?;
        }
    }
    write_safetensors(out, tensors, max_shard_bytes, progress)
}
