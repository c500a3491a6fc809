//! Prefill: many positions at once, in chunks of up to `CudaQwen3::prefill_chunk` positions, with
//! cuBLAS products over dequantized weights and flash attention (attn_prefill.cuh) that never
//! materializes the scores.

use super::decode::ATTN_CHUNK;
use super::device::{Arg, Buf, grid, int};
use super::{CudaQwen3, Layer};
use crate::model::KvCacheFormat;
use anyhow::Result;
use cudarc::driver::LaunchConfig;

/// Query rows one prefill chunk multiplies at once, unless QWEN3_AGENT_CUDA_PREFILL_CHUNK says otherwise:
/// 2048 spreads each matrix's dequantization over 4× the rows of 512 (8B shape on an H100: prefill
/// of 2k tokens 26.0k tok/s against 18.1k, of 32k 12.9k against 10.8k; BENCHMARKS.md) for 0.3 GB more
/// scratch.
pub(super) const DEFAULT_CHUNK: usize = 2048;
/// Warps of a flash-attention block (FLASH_WARPS in attn_prefill.cuh).
const FLASH_WARPS: usize = 4;

impl CudaQwen3 {
    /// Runs `ids` (checked by `check_new_ids`) after the cached positions chunk by chunk, and returns
    /// the logits of the last one, or of every one with `all_logits`.
    pub(super) fn prefill(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let start = self.tokens.len();
        let vocab = self.config.vocab_size;
        let mut logits = Vec::new();
        let mut done = 0;
        while done < ids.len() {
            let m = (ids.len() - done).min(self.prefill_chunk);
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

    /// Causal attention of m queries over positions 0..start+m into `attn_rows`: q/k-norm and RoPE
    /// (k and v into the cache), then the flash kernel (attn_prefill.cuh), whose blocks each serve
    /// `heads_per_block` query heads of one KV head over 16-row strips.
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
        let group = nh / nkv;
        let heads_per_block = gcd(group, FLASH_WARPS);
        let rows_per_block = 16 * FLASH_WARPS / heads_per_block;
        let kernels = match self.kv_format {
            KvCacheFormat::F16 => &self.kernels.flash_prefill,
            KvCacheFormat::Fp8 => &self.kernels.flash_prefill_fp8,
        };
        let kernel = match hd {
            ..=32 => &kernels[0],
            33..=64 => &kernels[1],
            _ => &kernels[2],
        };
        self.qk_norm_rope(layer, m)?;
        let cfg = LaunchConfig {
            grid_dim: (
                m.div_ceil(rows_per_block) as u32,
                (nh / heads_per_block) as u32,
                1,
            ),
            block_dim: (32 * FLASH_WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut args = vec![Arg::Ptr(s.q_heads.ptr)];
        args.extend(layer.kv.args());
        args.extend([
            Arg::Ptr(s.attn_rows.ptr),
            int(m),
            int(start),
            int(nh),
            int(group),
            int(heads_per_block),
            int(hd),
            int(self.capacity),
            Arg::Float(scale * std::f32::consts::LOG2_E),
        ]);
        self.launch(kernel, cfg, &args)
    }

    /// q/k RMSNorm and RoPE of m rows: q into `q_heads`, k and v into the cache.
    fn qk_norm_rope(&self, layer: &Layer, m: usize) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let mut args = Vec::from(self.norm_rope_args(layer, m));
        args.push(Arg::Ptr(s.q_heads.ptr));
        args.extend(layer.kv.args());
        args.extend([
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
}

/// Greatest common divisor (heads per flash block: a divisor of both the group and the warps).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
