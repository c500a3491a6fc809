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

fn load_cpu(
    dir: &Path,
    config: Qwen3Config,
    options: &LoadOptions,
    capacity: usize,
    progress: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
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
    let model = super::cuda::CudaQwen3::load(&weights, config, 0, capacity, int8_head, progress)
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
