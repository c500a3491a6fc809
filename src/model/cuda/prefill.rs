//! Prefill: many positions at once, in chunks whose attention scores fit a fixed budget, with cuBLAS
//! products over dequantized weights and attention through the score matrix.

use super::decode::ATTN_CHUNK;
use super::device::{Arg, Buf, grid, int};
use super::{CudaQwen3, Layer};
use anyhow::Result;

/// Most query rows one prefill chunk multiplies at once.
pub(super) const MAX_CHUNK: usize = 512;
/// Elements of the f32 attention-score matrix of one chunk ([heads][chunk][context]): bounds memory at
/// long contexts by shrinking the chunk instead.
pub(super) const SCORE_BUDGET: usize = 32 << 20;

impl CudaQwen3 {
    /// Runs `ids` (checked by `check_new_ids`) after the cached positions chunk by chunk, and returns
    /// the logits of the last one, or of every one with `all_logits`.
    pub(super) fn prefill(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let start = self.tokens.len();
        let vocab = self.config.vocab_size;
        let mut logits = Vec::new();
        let mut done = 0;
        while done < ids.len() {
            let m = self.chunk_len(start + done, ids.len() - done);
            let chunk = &ids[done..done + m];
            self.upload_chunk(chunk, start + done)?;
            self.run_layers(m, start + done, (start + done + 1).div_ceil(ATTN_CHUNK))?;
            self.tokens.extend_from_slice(chunk);
            done += m;
            if all_logits {
                let rows = Buf::<f32>::zeros(&self.stream, m * vocab)?;
                self.lm_head(0, m, rows.ptr)?;
                self.download(&rows, m, &mut logits)?;
            } else if done == ids.len() {
                self.lm_head(m - 1, 1, self.scratch.logits.ptr)?;
                self.download(&self.scratch.logits, 1, &mut logits)?;
            }
        }
        Ok(logits)
    }

    /// Causal attention of m queries over positions 0..start+m with cuBLAS: per KV head, the scores of
    /// its group of query heads at once (Q rows [group][m] are contiguous in [heads][m][hd]).
    pub(super) fn attention_prefill(
        &self,
        layer: &Layer,
        m: usize,
        start: usize,
        scale: f32,
    ) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let (len, rows) = (start + m, (nh / nkv) * m);
        let kv_stride = self.capacity * hd;
        self.qk_norm_rope(layer, m)?;
        // Scoresᵀ (len × rows) = K (len × hd) · Qᵀ, per KV head.
        self.gemm(
            true,
            (len, rows, hd),
            (layer.k_cache.ptr, hd, kv_stride),
            (s.q_heads.ptr, hd, rows * hd),
            (s.scores.ptr, len, rows * len, true),
            scale,
            0.0,
            nkv,
        )?;
        self.launch(
            &self.kernels.softmax_causal,
            grid((nh * m, 1), 256),
            &[
                Arg::Ptr(s.scores.ptr),
                Arg::Ptr(s.probs.ptr),
                int(m),
                int(len),
                int(start),
            ],
        )?;
        // Outᵀ (hd × rows) = Vᵀ (hd × len) · Pᵀ (len × rows), per KV head.
        self.gemm(
            false,
            (hd, rows, len),
            (layer.v_cache.ptr, hd, kv_stride),
            (s.probs.ptr, len, rows * len),
            (s.attn_heads.ptr, hd, rows * hd, false),
            1.0,
            0.0,
            nkv,
        )?;
        self.launch(
            &self.kernels.heads_to_rows,
            grid((m, nh), 64),
            &[
                Arg::Ptr(s.attn_heads.ptr),
                Arg::Ptr(s.attn_rows.ptr),
                int(m),
                int(nh),
                int(hd),
            ],
        )
    }

    /// q/k RMSNorm and RoPE of m rows: q into `q_heads`, k and v into the cache.
    fn qk_norm_rope(&self, layer: &Layer, m: usize) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let mut args = Vec::from(self.norm_rope_args(layer, m));
        args.extend([
            Arg::Ptr(s.q_heads.ptr),
            Arg::Ptr(layer.k_cache.ptr),
            Arg::Ptr(layer.v_cache.ptr),
            int(m),
            int(nh),
            int(nkv),
            int(hd),
            Arg::Ptr(s.step.ptr),
            int(self.capacity),
            Arg::Float(c.rms_norm_eps as f32),
        ]);
        self.launch(&self.kernels.qk_norm_rope, grid((m, nh + nkv), 32), &args)
    }

    /// The largest chunk whose score matrix fits the budget when the context reaches `start + chunk`.
    fn chunk_len(&self, start: usize, remaining: usize) -> usize {
        let nh = self.config.num_attention_heads;
        let mut m = remaining.min(MAX_CHUNK).min(self.capacity);
        while m > 1 && nh * m * (start + m) > self.scratch.scores.slice.len() {
            m /= 2;
        }
        m
    }
}
