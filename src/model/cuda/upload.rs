//! Loading a checkpoint onto the GPU: the weights in their device formats, the KV cache, the RoPE
//! tables and the scratch every chunk works in.

use super::decode::ATTN_CHUNK;
use super::device::{Buf, Kernels};
use super::formats::{Linear, to_f16};
use super::kv_cache::LayerKvCache;
use super::prefill::DEFAULT_CHUNK;
use super::sample::Sampling;
use super::{CudaQwen3, Layer, Scratch};
use crate::model::KvCacheFormat;
use crate::model::config::Qwen3Config;
use crate::model::rope::Rope;
use crate::model::weights::Weights;
use anyhow::{Context, Result, ensure};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, sys as driver_sys};
use safetensors::Dtype;
use std::collections::BTreeMap;

/// Hidden sizes i8_gemv takes (multiples of 512 up to I8_K in kernels.cu): an untied f16 lm_head of
/// another width stays f16.
const I8_HEAD_WIDTHS: std::ops::RangeInclusive<usize> = 512..=4096;
/// Set to 0 to launch every kernel only after the previous one has finished (for A/B measurements of
/// the overlap; see `CudaQwen3::overlap`).
const OVERLAP_ENV: &str = "QWEN3_AGENT_CUDA_OVERLAP";
/// Caps the decode attention's blocks per KV head (a positive number), so tests can make short
/// contexts take the path long ones take (several tiles per block).
const ATTN_SPLITS_ENV: &str = "QWEN3_AGENT_CUDA_ATTN_SPLITS";
/// Positions per prefill chunk (a positive number; default `DEFAULT_CHUNK`): larger chunks spread each
/// matrix's dequantization over more rows and cost scratch memory in proportion.
const PREFILL_CHUNK_ENV: &str = "QWEN3_AGENT_CUDA_PREFILL_CHUNK";
/// The largest chunk that variable may ask for.
const MAX_CHUNK: usize = 16384;
/// Decode attention blocks per multiprocessor the cap aims for (each stages 35 KB of K and V rows).
const ATTN_BLOCKS_PER_SM: usize = 4;

impl CudaQwen3 {
    /// Uploads the checkpoint to GPU `ordinal` and allocates a KV cache for `capacity` positions in
    /// `kv_format`.
    /// `int8_head`: an untied f16 lm_head of a width i8_gemv takes is quantized to int8 per row and
    /// group of 128 (`Linear::Int8`), as the CPU engine's fast precision does. `progress` counts
    /// steps as `Qwen3::load` does: each layer once it is uploaded and repacked, then the embedding
    /// and lm_head.
    pub fn load(
        weights: &Weights,
        config: Qwen3Config,
        ordinal: usize,
        capacity: usize,
        int8_head: bool,
        kv_format: KvCacheFormat,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        // cudarc panics on a missing library; check first so the user gets an answer instead.
        // SAFETY: these only try to open the libraries.
        ensure!(
            unsafe { cudarc::driver::sys::is_culib_present() },
            "libcuda.so.1 (the NVIDIA driver) was not found: install the driver, or use --device cpu"
        );
        ensure!(
            unsafe { cudarc::cublas::sys::is_culib_present() },
            "libcublas.so.13 was not found: put the CUDA 13 libraries on LD_LIBRARY_PATH (e.g. \
             /usr/local/cuda-13.0/targets/x86_64-linux/lib or the pip nvidia-cublas package's lib)"
        );
        let ctx = CudaContext::new(ordinal).with_context(|| {
            format!(
                "cannot open CUDA device {ordinal}: is an NVIDIA driver installed and a GPU visible \
                 (nvidia-smi)? libcuda.so.1 must be on the library path"
            )
        })?;
        // One stream: cudarc's cross-stream event bookkeeping would only add work to every launch.
        unsafe { ctx.disable_event_tracking() };
        let device_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        // Not the legacy default stream: the decode step is captured into a graph, which needs another.
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        let blas = CudaBlas::new(stream.clone()).context(
            "cannot start cuBLAS: libcublas.so.13 and libcublasLt.so.13 must be on the library path \
             (LD_LIBRARY_PATH)",
        )?;
        let kernels = Kernels::load(&ctx)?;
        let multiprocessors =
            ctx.attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .context("reading the GPU's multiprocessor count")? as usize;
        let awq = config.awq()?;
        let (h, hd, inter) = (
            config.hidden_size,
            config.head_dim(),
            config.intermediate_size,
        );
        let (nh, nkv) = (config.num_attention_heads, config.num_key_value_heads);
        ensure!(
            hd <= 128 && hd.is_multiple_of(8),
            "the CUDA engine supports head_dim up to 128, in multiples of 8; this model has {hd}"
        );
        ensure!(
            kv_format == KvCacheFormat::F16 || hd.is_multiple_of(16),
            "the fp8 KV cache needs head_dim in multiples of 16 (16-byte rows); this model has {hd}: \
             use the f16 cache"
        );
        ensure!(
            nh.is_multiple_of(nkv) && nh / nkv <= 8,
            "the CUDA engine supports up to 8 query heads per KV head; this model has {nh} for {nkv}"
        );
        let norm = |name: &str, len| -> Result<Buf<f32>> {
            Buf::from_host(&stream, &weights.get(name, &[len])?.to_f32()?)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let linear = |name: &str, inf, outf| {
                Linear::load(
                    &stream,
                    &kernels,
                    weights,
                    &format!("{p}.{name}"),
                    (inf, outf),
                    awq,
                )
            };
            layers.push(Layer {
                input_norm: norm(&format!("{p}.input_layernorm.weight"), h)?,
                post_attention_norm: norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
                q_norm: norm(&format!("{p}.self_attn.q_norm.weight"), hd)?,
                k_norm: norm(&format!("{p}.self_attn.k_norm.weight"), hd)?,
                q_proj: linear("self_attn.q_proj", h, nh * hd)?,
                k_proj: linear("self_attn.k_proj", h, nkv * hd)?,
                v_proj: linear("self_attn.v_proj", h, nkv * hd)?,
                o_proj: linear("self_attn.o_proj", nh * hd, h)?,
                gate_proj: linear("mlp.gate_proj", h, inter)?,
                up_proj: linear("mlp.up_proj", h, inter)?,
                down_proj: linear("mlp.down_proj", inter, h)?,
                kv: LayerKvCache::zeros(&stream, kv_format, nkv * capacity, hd)?,
            });
            progress(i + 1, config.num_hidden_layers + 1);
        }
        let norm_w = norm("model.norm.weight", h)?;
        let (embed, lm_head) = match awq {
            Some(a) if a.quantized_embeddings => (
                None,
                Linear::load_awq(
                    &stream,
                    &kernels,
                    weights,
                    "model.embed_tokens",
                    (h, config.vocab_size),
                    a.group_size,
                )?,
            ),
            _ => {
                let table = weights.get("model.embed_tokens.weight", &[config.vocab_size, h])?;
                let table = Buf::from_host(&stream, &to_f16(&table)?)?;
                if config.tie_word_embeddings {
                    let lm_head = Linear::Dense {
                        weight: table,
                        inf: h,
                        outf: config.vocab_size,
                    };
                    (None, lm_head)
                } else {
                    let head = weights.get("lm_head.weight", &[config.vocab_size, h]).context(
                        "lm_head.weight is missing and config.json does not set tie_word_embeddings",
                    )?;
                    let dense = Buf::from_host(&stream, &to_f16(&head)?)?;
                    let lm_head = if head.dtype == Dtype::F16
                        && I8_HEAD_WIDTHS.contains(&h)
                        && h.is_multiple_of(512)
                        && int8_head
                    {
                        Linear::int8_from(&stream, &kernels, &dense, config.vocab_size, h)?
                    } else {
                        Linear::Dense {
                            weight: dense,
                            inf: h,
                            outf: config.vocab_size,
                        }
                    };
                    (Some(table), lm_head)
                }
            }
        };
        let (cos, sin) = Rope::new(&config).tables(0..capacity);
        let dequant = layers
            .iter()
            .flat_map(Layer::linears)
            .chain([&lm_head])
            .map(Linear::dequant_len)
            .max()
            .unwrap_or(0);
        let chunk = positive_env(PREFILL_CHUNK_ENV, "positions")?
            .unwrap_or(DEFAULT_CHUNK)
            .min(capacity);
        // The all-logits lm_head launches a grid row per position (at most 65,535).
        ensure!(
            chunk <= MAX_CHUNK,
            "{PREFILL_CHUNK_ENV} may be at most {MAX_CHUNK} positions, not {chunk}"
        );
        let scratch = Scratch {
            ids: Buf::zeros(&stream, chunk)?,
            step: Buf::zeros(&stream, 2)?,
            hidden: Buf::zeros(&stream, chunk * h)?,
            normed: Buf::zeros(&stream, chunk * h)?,
            qkv: Buf::zeros(&stream, chunk * (nh + 2 * nkv) * hd)?,
            gate_up: Buf::zeros(&stream, chunk * 2 * inter)?,
            q_heads: Buf::zeros(&stream, chunk * nh * hd)?,
            attn_rows: Buf::zeros(&stream, chunk * nh * hd)?,
            act: Buf::zeros(&stream, chunk * inter)?,
            partial: Buf::zeros(&stream, nh * capacity.div_ceil(ATTN_CHUNK) * (hd + 2))?,
            arrivals: Buf::zeros(&stream, nkv)?,
            dequant: Buf::zeros(&stream, dequant)?,
            final_normed: Buf::zeros(&stream, chunk * h)?,
            logits: Buf::zeros(&stream, config.vocab_size)?,
            best_logit: Buf::zeros(&stream, 1)?,
        };
        let sampling = Sampling::new(&stream, config.vocab_size)?;
        let fused_decode = layers.iter().all(Layer::all_awq);
        let model = CudaQwen3 {
            rope_cos: Buf::from_host(&stream, &cos)?,
            rope_sin: Buf::from_host(&stream, &sin)?,
            config,
            stream,
            blas,
            kernels,
            embed,
            layers,
            norm: norm_w,
            lm_head,
            scratch,
            sampling,
            tokens: Vec::with_capacity(capacity),
            capacity,
            device_name,
            overlap: std::env::var(OVERLAP_ENV).map_or(true, |v| v != "0"),
            kv_format,
            multiprocessors,
            prefill_chunk: chunk,
            attn_max_splits: attn_max_splits(multiprocessors, nkv)?,
            fused_decode,
            decode_graphs: BTreeMap::new(),
        };
        model
            .stream
            .synchronize()
            .context("uploading the weights")?;
        let steps = model.config.num_hidden_layers + 1;
        progress(steps, steps);
        Ok(model)
    }
}

/// The decode attention's most blocks per KV head: enough for `ATTN_BLOCKS_PER_SM` blocks on every
/// multiprocessor (a power of two, so graphs stay few), or `ATTN_SPLITS_ENV`'s value.
fn attn_max_splits(multiprocessors: usize, kv_heads: usize) -> Result<usize> {
    if let Some(n) = positive_env(ATTN_SPLITS_ENV, "blocks")? {
        return Ok(n);
    }
    let fill = (ATTN_BLOCKS_PER_SM * multiprocessors / kv_heads.max(1)).max(1);
    Ok(1 << fill.ilog2())
}

/// A tuning variable's positive count of `what`, if set.
fn positive_env(name: &str, what: &str) -> Result<Option<usize>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => anyhow::bail!("{name} must be a positive number of {what}, not {text:?}"),
    }
}
