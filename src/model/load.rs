//! Choosing where the model runs and loading it there: the CPU decoder, or (feature `cuda`) the GPU one.

use super::config::{Qwen3Config, RopeScaling};
use super::decoder::{CpuDecoder, Decoder};
use super::qwen3::{Precision, Qwen3};
use anyhow::Result;
use std::path::Path;

/// Where the model runs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The GPU when this binary has CUDA and a GPU is present, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// How the KV cache stores keys and values. The CPU engine keeps f32 rows and takes only the default.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheFormat {
    /// The engine's own format: f16 on the GPU, f32 on the CPU.
    #[default]
    F16,
    /// GPU only: e4m3 bytes with one f32 scale per position and KV head (its largest |value| / 448):
    /// half the cache bytes of f16, so twice the context in the same memory and less to read per
    /// decoded token at long contexts, for a small logits error (BENCHMARKS.md).
    Fp8,
}

impl KvCacheFormat {
    /// Bytes of one cached value on the GPU (the scales are extra).
    pub fn bytes_per_value(self) -> usize {
        match self {
            KvCacheFormat::F16 => 2,
            KvCacheFormat::Fp8 => 1,
        }
    }
}

/// What `load_decoder` needs besides the directory.
pub struct LoadOptions {
    pub device: Device,
    /// How matmuls treat activations (CPU). On the GPU, AWQ layers always multiply int8 activations
    /// (decode) or f16 ones (prefill), and `Fast` reads an untied f16 lm_head as int8 (`Exact` keeps
    /// it f16).
    pub precision: Precision,
    /// Replaces config.json's rope_scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// KV cache positions; None takes min(default, max_position_embeddings).
    pub context_length: Option<usize>,
    /// The cache's format (fp8: GPU only).
    pub kv_cache: KvCacheFormat,
}

/// Context when none is asked for: agent prompts stay far below Qwen3's 40,960 positions, and the cache
/// is allocated up front.
pub const DEFAULT_CONTEXT: usize = 8192;

/// Loads a model directory onto the requested device. `progress(done, total)` counts steps: one per
/// layer after its upload and repacking, then one for the embedding and lm_head.
pub fn load_decoder(
    dir: &Path,
    options: &LoadOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
    let (config, capacity) = config_and_capacity(dir, options)?;
    match options.device {
        Device::Cpu => load_cpu(dir, config, options, capacity, progress),
        Device::Cuda => load_cuda(dir, config, options, capacity, progress),
        Device::Auto if cuda_available() => load_cuda(dir, config, options, capacity, progress),
        Device::Auto => load_cpu(dir, config, options, capacity, progress),
    }
}

/// The CPU model alone and the context each sequence gets, for a model shared by several sequences
/// (`engine::batch`).
pub fn load_cpu_model(
    dir: &Path,
    options: &LoadOptions,
    progress: impl FnMut(usize, usize),
) -> Result<(Qwen3, usize)> {
    check_cpu_cache(options)?;
    let (config, capacity) = config_and_capacity(dir, options)?;
    let model = super::qwen3::load_with_config(dir, config, options.precision, progress)?;
    Ok((model, capacity))
}

/// config.json with the requested rope scaling, and the context to allocate.
fn config_and_capacity(dir: &Path, options: &LoadOptions) -> Result<(Qwen3Config, usize)> {
    let mut config = Qwen3Config::load(dir)?;
    if options.rope_scaling.is_some() {
        config.rope_scaling = options.rope_scaling.clone();
    }
    let capacity = options
        .context_length
        .unwrap_or(DEFAULT_CONTEXT.min(config.max_position_embeddings));
    Ok((config, capacity))
}

/// The CPU engine's cache is f32: an fp8 request is refused rather than silently ignored.
fn check_cpu_cache(options: &LoadOptions) -> Result<()> {
    if options.kv_cache == KvCacheFormat::Fp8 {
        anyhow::bail!(
            "the fp8 KV cache runs on the GPU only (--device cuda); the CPU engine keeps its cache in \
             f32: leave out kv_cache: fp8 / --kv-cache fp8"
        );
    }
    Ok(())
}

fn load_cpu(
    dir: &Path,
    config: Qwen3Config,
    options: &LoadOptions,
    capacity: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
    check_cpu_cache(options)?;
    let model = super::qwen3::load_with_config(dir, config, options.precision, progress)?;
    Ok(Box::new(CpuDecoder::new(model, capacity)))
}

/// Whether this binary has CUDA and the driver reports a GPU.
pub fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        // SAFETY: only tries to open libcuda; the count is read after it is known to be present.
        let driver_present = unsafe { cudarc::driver::sys::is_culib_present() };
        driver_present && cudarc::driver::CudaContext::device_count().is_ok_and(|n| n > 0)
    }
    #[cfg(not(feature = "cuda"))]
    false
}

#[cfg(feature = "cuda")]
fn load_cuda(
    dir: &Path,
    config: Qwen3Config,
    options: &LoadOptions,
    capacity: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
    use anyhow::Context;
    let weights = super::weights::Weights::open(dir)?;
    let int8_head = options.precision == Precision::Fast;
    let model = super::cuda::CudaQwen3::load(
        &weights,
        config,
        0,
        capacity,
        int8_head,
        options.kv_cache,
        progress,
    )
    .with_context(|| format!("loading the model in {} onto the GPU", dir.display()))?;
    Ok(Box::new(model))
}

#[cfg(not(feature = "cuda"))]
fn load_cuda(
    _: &Path,
    _: Qwen3Config,
    _: &LoadOptions,
    _: usize,
    _: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
    anyhow::bail!(
        "this qwen3-agent was built without CUDA: build it with scripts/build-cuda.sh (see the README), \
         or use --device cpu"
    )
}
