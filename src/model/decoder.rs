//! What the engine drives: a Qwen3 with its KV cache, on the CPU or (feature `cuda`, src/model/cuda)
//! on a GPU. Choosing and loading one is load.rs's job, so the GPU decoder depends on this trait and
//! nothing here depends on it.

use super::KvCache;
use super::config::Qwen3Config;
use super::qwen3::Qwen3;
use anyhow::Result;

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
