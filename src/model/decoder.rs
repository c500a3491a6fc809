//! What the engine drives: a Qwen3 with its KV cache, on the CPU or (feature `cuda`) on a GPU.

use super::KvCache;
use super::config::{Qwen3Config, RopeScaling};
use super::qwen3::{Precision, Qwen3};
use anyhow::Result;
use std::path::Path;

/// A model that owns its KV cache, so the engine can reuse a cached prefix on any device.
pub trait Decoder: Send {
    fn config(&self) -> &Qwen3Config;
    /// The ids whose keys and values are cached, in order.
    fn cached_tokens(&self) -> &[u32];
    /// Forgets cached positions from `len` on.
    fn truncate_cache(&mut self, len: usize);
    /// Positions the cache can hold.
    fn capacity(&self) -> usize;
    /// Runs `ids` after the cached positions, caches them, and returns logits ([vocab] for the last id,
    /// or [ids.len()][vocab] when `all_logits`).
    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>>;
    /// Runs `id` as `forward` does and returns the id of its largest logit (the first on ties), when
    /// the decoder can pick it where the logits are: greedy decoding on a GPU then copies 8 bytes to
    /// the host per token, not the vocabulary's logits. None: nothing ran, call `forward`.
    fn forward_argmax(&mut self, _id: u32) -> Result<Option<u32>> {
        Ok(None)
    }
    /// For GPU decoders: the device, its memory in use, and a measured copy bandwidth (what `bench`
    /// reports); None on the CPU.
    fn gpu_report(&mut self) -> Result<Option<GpuReport>> {
        Ok(None)
    }
}

/// What `bench --device cuda` reports beside the speeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuReport {
    pub device: String,
    /// Device memory in use (all of it: weights, cache, scratch, CUDA context), as the driver reports.
    pub memory_used_bytes: usize,
    /// Bytes the model itself holds on the device.
    pub model_bytes: usize,
    /// Weight bytes every decoded token reads (linears, norms and the lm_head).
    pub decode_bytes_per_token: usize,
    /// The same for the checkpoint as stored (an lm_head the engine reads as int8 counted at f16): the
    /// roofline of an engine that reads the checkpoint as it is.
    pub checkpoint_bytes_per_token: usize,
    /// A device-to-device copy's bytes read plus written per second (the decode roofline's ceiling).
    pub copy_bytes_per_s: f64,
}

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

/// The CPU engine and its cache.
pub struct CpuDecoder {
    pub model: Qwen3,
    cache: KvCache,
}

impl CpuDecoder {
    pub fn new(model: Qwen3, capacity: usize) -> Self {
        let cache = model.new_cache(capacity);
        CpuDecoder { model, cache }
    }
}

impl Decoder for CpuDecoder {
    fn config(&self) -> &Qwen3Config {
        &self.model.config
    }

    fn cached_tokens(&self) -> &[u32] {
        self.cache.tokens()
    }

    fn truncate_cache(&mut self, len: usize) {
        self.cache.truncate(len);
    }

    fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        self.model.forward(ids, &mut self.cache, all_logits)
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
}

/// Context when none is asked for: agent prompts stay far below Qwen3's 40,960 positions, and the cache
/// is allocated up front.
pub const DEFAULT_CONTEXT: usize = 8192;

/// Loads a model directory onto the requested device; `progress` is called per layer.
pub fn load_decoder(
    dir: &Path,
    options: &LoadOptions,
    progress: impl FnMut(usize, usize),
) -> Result<Box<dyn Decoder>> {
    let mut config = Qwen3Config::load(dir)?;
    if options.rope_scaling.is_some() {
        config.rope_scaling = options.rope_scaling.clone();
    }
    let capacity = options
        .context_length
        .unwrap_or(DEFAULT_CONTEXT.min(config.max_position_embeddings));
    match options.device {
        Device::Cpu => load_cpu(dir, config, options, capacity, progress),
        Device::Cuda => load_cuda(dir, config, options, capacity, progress),
        Device::Auto if cuda_available() => load_cuda(dir, config, options, capacity, progress),
        Device::Auto => load_cpu(dir, config, options, capacity, progress),
    }
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
