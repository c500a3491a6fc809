//! Decode: one token per step, the whole step (embedding to logits) captured once into a CUDA graph
//! per attention grid and replayed; five kernels per all-AWQ layer, and the greedy pick on the device.

use super::device::{Arg, grid, int};
use super::matmul::GemvInput;
use super::sample::candidate;
use super::{CudaQwen3, Layer};
use crate::model::KvCacheFormat;
use anyhow::{Context, Result};
use cudarc::driver::{CudaGraph, result as driver};

/// Positions of one tile of the decode attention (ATTN_CHUNK in kernels.cu); a block covers one or,
/// at long contexts, several.
pub(super) const ATTN_CHUNK: usize = 64;

/// The captured decode step.
pub(super) struct DecodeGraph(CudaGraph);

// SAFETY: a CUDA graph belongs to its context, not to a thread; cudarc binds the context to the calling
// thread before each launch, and the engine uses the model from one thread at a time (&mut self).
unsafe impl Send for DecodeGraph {}

impl CudaQwen3 {
    /// Runs one token (checked by `check_new_ids`) after the cached positions and returns its logits.
    pub(super) fn decode(&mut self, id: u32) -> Result<Vec<f32>> {
        self.replay_decode(id, self.tokens.len())?;
        let mut logits = Vec::new();
        self.download(&self.scratch.logits, 1, &mut logits)?;
        self.tokens.push(id);
        Ok(logits)
    }

    /// One layer of a decode step whose matrices are all AWQ, in five kernels: the RMSNorms run inside
    /// the GEMVs that read them, q/k-norm, RoPE and the cache write inside the attention, and each GEMV
    /// zeroes the outputs of a later one (whose readers have finished by then) for its atomics.
    pub(super) fn decode_layer_awq(
        &self,
        layer: &Layer,
        scale: f32,
        attn_chunks: usize,
    ) -> Result<()> {
        let ([q, k, v], qkv_len) = self.qkv_rows(1);
        let ([gate, up], gate_up_len) = self.gate_up_rows(1);
        let hidden = self.scratch.hidden.ptr;
        self.awq_gemv(
            &[(&layer.q_proj, q), (&layer.k_proj, k), (&layer.v_proj, v)],
            GemvInput::Normed {
                x: hidden,
                weight: layer.input_norm.ptr,
            },
            (gate, gate_up_len),
        )?;
        self.attention_decode(layer, scale, attn_chunks, false)?;
        self.awq_gemv(
            &[(&layer.o_proj, hidden)],
            GemvInput::AttentionParts {
                chunks: attn_chunks,
            },
            (q, qkv_len),
        )?;
        self.awq_gemv(
            &[(&layer.gate_proj, gate), (&layer.up_proj, up)],
            GemvInput::Normed {
                x: hidden,
                weight: layer.post_attention_norm.ptr,
            },
            (0, 0),
        )?;
        self.awq_gemv(
            &[(&layer.down_proj, hidden)],
            GemvInput::SiluOf { gate, up },
            (0, 0),
        )
    }

    /// Attention of the one new token (its q, k, v straight from the projections): joined into
    /// `attn_rows`, or with `join` false left in per-chunk parts for `GemvInput::AttentionParts`.
    pub(super) fn attention_decode(
        &self,
        layer: &Layer,
        scale: f32,
        chunks: usize,
        join: bool,
    ) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let mut args = Vec::from(self.norm_rope_args(layer, 1));
        args.extend(layer.kv.args());
        args.extend([
            Arg::Ptr(s.partial.ptr),
            Arg::Ptr(s.arrivals.ptr),
            Arg::Ptr(if join { s.attn_rows.ptr } else { 0 }),
            Arg::Ptr(s.step.ptr),
            int(nh),
            int(nkv),
            int(hd),
            int(self.capacity),
            Arg::Float(scale),
            Arg::Float(c.rms_norm_eps as f32),
        ]);
        let kernel = match self.kv_format {
            KvCacheFormat::F16 => &self.kernels.attn_decode,
            KvCacheFormat::Fp8 => &self.kernels.attn_decode_fp8,
        };
        self.launch(kernel, grid((nkv, chunks), 256), &args)
    }

    /// Records one decode step (embedding to logits) without running it.
    fn capture_decode(&self, attn_chunks: usize) -> Result<CudaGraph> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let recorded = self
            .run_layers(1, 0, attn_chunks)
            .and_then(|()| self.lm_head(0, 1, self.scratch.logits.ptr));
        // End the capture even when recording failed, so the stream is usable again.
        let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
        recorded.context("recording the decode step")?;
        graph
            .context("instantiating the decode graph")?
            .context("CUDA captured no work for the decode step")
    }

    /// Runs the decode step for `id` at position `start` (its graph, captured on first use); the
    /// logits stay in scratch.logits.
    pub(super) fn replay_decode(&mut self, id: u32, start: usize) -> Result<()> {
        self.upload_chunk(&[id], start)?;
        let chunks = (start + 1)
            .div_ceil(ATTN_CHUNK)
            .next_power_of_two()
            .min(self.capacity.div_ceil(ATTN_CHUNK))
            .min(self.attn_max_splits);
        if !self.decode_graphs.contains_key(&chunks) {
            let graph = DecodeGraph(self.capture_decode(chunks)?);
            self.decode_graphs.insert(chunks, graph);
        }
        if let Some(DecodeGraph(graph)) = self.decode_graphs.get(&chunks) {
            graph.launch().context("replaying the decode step")?;
        }
        Ok(())
    }

    /// The index of the largest logit in scratch.logits (argmax_logits), waiting for the GPU.
    pub(super) fn argmax_logits(&self) -> Result<u32> {
        let s = &self.scratch;
        // SAFETY: best_logit holds one u64; the memset is ordered on the stream before the kernel.
        unsafe { driver::memset_d8_async(s.best_logit.ptr, 0, 8, self.stream.cu_stream()) }?;
        self.launch_with(
            &self.kernels.argmax_logits,
            grid((self.multiprocessors, 1), 256),
            &[
                Arg::Ptr(s.logits.ptr),
                int(self.config.vocab_size),
                Arg::Ptr(s.best_logit.ptr),
            ],
            false,
        )?;
        let mut key = [0u64];
        // SAFETY: best_logit holds one u64.
        unsafe { self.copy_to_host(s.best_logit.ptr, &mut key) }?;
        // No key: every logit was NaN; the host's argmax answers 0 then too.
        Ok(if key[0] == 0 { 0 } else { candidate(key[0]).0 })
    }
}
