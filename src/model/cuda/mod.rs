//! The Qwen3 decoder on an NVIDIA GPU (feature `cuda`): the same checkpoints as the CPU engine, with the
//! weights, the KV cache and every activation on the device. On the parity fixtures its (prefill)
//! logits are within 2e-3 (relative L2) of transformers' and of the CPU engine's, and greedy decoding
//! gives the CPU engine's tokens (scripts/cuda/check.py).
//!
//! Decode (one token) runs our own kernels (kernels.cu), five per AWQ layer: an int4 GEMV that reads each
//! packed weight once, computes its own input (the RMSNorm, silu(gate) · up, or the attention's parts
//! joined) and multiplies it as int8 per AWQ group, for q/k/v, o, gate/up and down; and one
//! split-context attention kernel that also applies q/k-norm and RoPE and writes the cache (f16, or
//! opt-in fp8 e4m3 with a scale per row: kv_cache.cuh). The lm_head
//! is an f16 GEMV, or an int8 one (`Precision::Fast`, untied heads), or the AWQ GEMV (a packed tied
//! table); greedy decoding picks the token on the device (`argmax_logits`).
//! Prefill dequantizes each AWQ matrix to f16 and multiplies with cuBLAS (tensor cores), in chunks of
//! 2048 positions (or QWEN3_AGENT_CUDA_PREFILL_CHUNK); its attention is a flash-attention kernel on
//! tensor cores (attn_prefill.cuh) that never writes the score matrix, so a chunk costs the same
//! memory at any context length.
//!
//! The CUDA libraries are loaded when the engine starts (cudarc's dynamic loading), so a binary built with
//! the feature runs on machines without a GPU until `--device cuda` is asked for.
//!
//! The files: device.rs (buffers, the kernel table, launches, cuBLAS, copies), formats.rs (the weight
//! formats and their repacking), kv_cache.rs (the cache's buffers), upload.rs (`CudaQwen3::load`),
//! matmul.rs (the linear layers),
//! layers.rs (the pass over the layers), prefill.rs, decode.rs (the step and its CUDA graphs),
//! sample.rs (sampled decoding's candidates on the device) and report.rs (what `bench` reports); this
//! file ties them into the `Decoder`.

mod decode;
mod device;
mod formats;
mod kv_cache;
mod layers;
mod matmul;
mod prefill;
mod report;
mod sample;
mod upload;

use crate::model::KvCacheFormat;
use crate::model::config::Qwen3Config;
use crate::model::decoder::{Decoder, GpuReport, TopKRequest};
use anyhow::{Result, bail};
use cudarc::cublas::CudaBlas;
use cudarc::driver::CudaStream;
use decode::DecodeGraph;
use device::{Buf, Kernels};
use formats::Linear;
use half::f16;
use kv_cache::LayerKvCache;
use sample::Sampling;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One decoder layer on the device: its norms, its seven matrices and its KV cache.
struct Layer {
    input_norm: Buf<f32>,
    post_attention_norm: Buf<f32>,
    q_norm: Buf<f32>,
    k_norm: Buf<f32>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    kv: LayerKvCache,
}

impl Layer {
    /// Whether every matrix is AWQ with one group size: the layer's decode step then runs fused.
    fn all_awq(&self) -> bool {
        let group = |l: &Linear| match l {
            Linear::Awq { group, .. } => Some(*group),
            Linear::Dense { .. } | Linear::Int8 { .. } => None,
        };
        let first = group(&self.q_proj);
        first.is_some() && self.linears().into_iter().all(|l| group(l) == first)
    }

    fn linears(&self) -> [&Linear; 7] {
        [
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.o_proj,
            &self.gate_proj,
            &self.up_proj,
            &self.down_proj,
        ]
    }
}

/// Activations of one chunk, allocated once for the largest chunk.
struct Scratch {
    ids: Buf<i32>,
    /// [start, start + m] of the running chunk, read by kernels so a decode graph serves every position.
    step: Buf<i32>,
    hidden: Buf<f32>,
    normed: Buf<f16>,
    /// q, k and v outputs back to back ([chunk][heads·hd], then k, then v), so a decode step zeroes them
    /// for the GEMV's atomics in one memset; likewise gate and up.
    qkv: Buf<f32>,
    gate_up: Buf<f32>,
    q_heads: Buf<f16>,
    attn_rows: Buf<f16>,
    act: Buf<f16>,
    partial: Buf<f32>,
    /// Per KV head, how many decode-attention blocks have written their part (the last one joins them).
    arrivals: Buf<u32>,
    dequant: Buf<f16>,
    final_normed: Buf<f16>,
    logits: Buf<f32>,
    /// argmax_logits' answer: the key of the largest logit.
    best_logit: Buf<u64>,
}

/// Qwen3ForCausalLM on one GPU, with its KV cache.
pub struct CudaQwen3 {
    config: Qwen3Config,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    /// The f16 [vocab][hidden] table; None when the lm_head's weights are the embedding (tied: dense
    /// [vocab][hidden], or packed [hidden][vocab] AWQ where token i is column i).
    embed: Option<Buf<f16>>,
    layers: Vec<Layer>,
    norm: Buf<f32>,
    lm_head: Linear,
    rope_cos: Buf<f32>,
    rope_sin: Buf<f32>,
    scratch: Scratch,
    /// Sampled decoding's candidate selection (sample.rs).
    sampling: Sampling,
    tokens: Vec<u32>,
    capacity: usize,
    device_name: String,
    /// Launch kernels with programmatic dependent launch: each may start while the previous one runs
    /// and waits in the kernel for its inputs, so launch gaps and the GEMVs' weight loads overlap the
    /// small kernels before them.
    overlap: bool,
    /// How the cache stores keys and values (picks the attention kernels).
    kv_format: KvCacheFormat,
    /// Streaming multiprocessors: the decode GEMV sizes its blocks to keep them all busy.
    multiprocessors: usize,
    /// Positions one prefill chunk runs at once (the scratch is sized for it).
    prefill_chunk: usize,
    /// The decode attention's most blocks per KV head; past that many 64-position tiles each block
    /// takes several, so the parts its join adds stay few at long contexts.
    attn_max_splits: usize,
    /// Every layer all AWQ with one group size: decode steps run `decode_layer_awq`, whose GEMVs compute
    /// the RMSNorms they read (a mixed model takes the generic path everywhere).
    fused_decode: bool,
    /// The whole decode step (embedding to logits) captured on first use and replayed for every token
    /// (~600 launches cost more CPU time than the GPU work they describe), one graph per attention grid:
    /// a power of two of 64-position chunks up to `attn_max_splits`, so short contexts do not launch
    /// blocks for the whole cache and long ones share one graph.
    decode_graphs: BTreeMap<usize, DecodeGraph>,
}

impl CudaQwen3 {
    /// Whether `ids` can run after the cached positions: some, within the vocabulary, room left.
    fn check_new_ids(&self, ids: &[u32]) -> Result<()> {
        let start = self.tokens.len();
        if ids.is_empty() {
            bail!("forward needs at least one token");
        }
        if start + ids.len() > self.capacity {
            bail!(
                "the context is full: {start} cached + {} new tokens exceed the {} positions allocated \
                 (raise context_length)",
                ids.len(),
                self.capacity
            );
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            bail!(
                "token id {bad} is outside the vocabulary (size {})",
                self.config.vocab_size
            );
        }
        Ok(())
    }
}

impl Decoder for CudaQwen3 {
    fn config(&self) -> &Qwen3Config {
        &self.config
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate_cache(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn prefill_step(&self) -> usize {
        self.prefill_chunk
    }

    fn gpu_report(&mut self) -> Result<Option<GpuReport>> {
        let (free, total) = self.stream.context().mem_get_info()?;
        Ok(Some(GpuReport {
            device: self.device_name.clone(),
            memory_used_bytes: total - free,
            model_bytes: self.device_bytes(),
            decode_bytes_per_token: self.decode_bytes_per_token(),
            checkpoint_bytes_per_token: self.checkpoint_bytes_per_token(),
            copy_bytes_per_s: self.measure_copy_bandwidth()?,
        }))
    }

    fn forward_argmax(&mut self, id: u32) -> Result<Option<u32>> {
        self.check_new_ids(&[id])?;
        self.replay_decode(id, self.tokens.len())?;
        let best = self.argmax_logits()?;
        self.tokens.push(id);
        Ok(Some(best))
    }

    fn forward_top_k(&mut self, id: u32, request: &TopKRequest) -> Result<Option<Vec<(u32, f32)>>> {
        self.top_k_candidates(id, request)
    }

    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        self.check_new_ids(ids)?;
        if ids.len() == 1 && !all_logits {
            return self.decode(ids[0]);
        }
        self.prefill(ids, all_logits)
    }
}
