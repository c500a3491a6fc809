//! What the engine drives: a Qwen3 with its KV cache, on the CPU or (feature `cuda`, src/model/cuda)
//! on a GPU. Choosing and loading one is load.rs's job, so the GPU decoder depends on this trait and
//! nothing here depends on it.

use super::KvCache;
use super::config::Qwen3Config;
use super::qwen3::Qwen3;
use anyhow::Result;

/// Prompt tokens one prefill step computes on the CPU: a long prompt runs in steps of this many so that
/// its progress can be reported between them; each step still fills the CPU's row blocks.
pub const PREFILL_STEP: usize = 512;

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
    /// Runs `id` as `forward` does and returns the next token's `request.k` best candidates, when the
    /// decoder can select them where the logits are: (id, logit) after the request's penalties, in
    /// `engine::sampler::candidate_order`, fewer only where the rest are NaN. The engine's `Sampler`
    /// draws from them, so sampled decoding on a GPU copies k pairs to the host per token, not the
    /// vocabulary's logits. None: nothing ran (this decoder, or this k, is not served), call `forward`.
    fn forward_top_k(
        &mut self,
        _id: u32,
        _request: &TopKRequest,
    ) -> Result<Option<Vec<(u32, f32)>>> {
        Ok(None)
    }
    /// Positions the engine hands `forward` at once when it prefills a prompt (and reports progress
    /// after): what the decoder runs as one chunk (the GPU's may be larger).
    fn prefill_step(&self) -> usize {
        PREFILL_STEP
    }
    /// Weight bytes one decoded token reads, where the decoder knows them on the host (the CPU
    /// engine; a GPU decoder reports its own in `gpu_report`): `bench`'s bandwidth roofline.
    fn host_decode_bytes_per_token(&self) -> Option<usize> {
        None
    }
    /// Told which prompt is about to be prefilled, before `cached_tokens` is compared with it: a
    /// decoder holding several sequences' caches may hand this sequence the idle cache sharing the
    /// longest prefix with it (a server's next request of a conversation lands on any engine).
    fn prepare_for(&mut self, _prompt: &[u32]) -> Result<()> {
        Ok(())
    }
    /// Told that a generation ended and no `forward` follows soon (the agent now runs tools or
    /// waits for a person): a decoder that shares its model with other sequences stops holding their
    /// next batched pass for this one.
    fn generation_done(&mut self) {}
    /// For GPU decoders: the device, its memory in use, and a measured copy bandwidth (what `bench`
    /// reports); None on the CPU.
    fn gpu_report(&mut self) -> Result<Option<GpuReport>> {
        Ok(None)
    }
}

/// What `Decoder::forward_top_k` selects by: a count and the penalties of `engine::sampler` (HF's
/// repetition penalty over prompt and output, a presence penalty over the output), with the tokens
/// they count.
#[derive(Debug, Clone, Copy)]
pub struct TopKRequest<'a> {
    /// Candidates wanted, at least 1.
    pub k: usize,
    /// 1: none.
    pub repetition_penalty: f32,
    /// 0: none.
    pub presence_penalty: f32,
    pub prompt: &'a [u32],
    /// The output so far; it ends with the id being run.
    pub generated: &'a [u32],
    /// The first request of a generation. A decoder that keeps the counted tokens where the logits
    /// are starts them afresh from `prompt` and `generated` then, and adds only the id being run on
    /// later requests.
    pub fresh: bool,
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

    fn host_decode_bytes_per_token(&self) -> Option<usize> {
        Some(self.model.decode_bytes_per_token())
    }
}
