//! The pass over the layers both prefill and decode run: the embedding, each layer (fused on the
//! decode path when every matrix is AWQ), the final RMSNorm and the lm_head, and where each
//! activation lies in the scratch.

use super::device::{Arg, Buf, grid, int};
use super::formats::Linear;
use super::matmul::GemvInput;
use super::{CudaQwen3, Layer};
use anyhow::{Result, bail};

/// Floats one extra block of `rms_norm` zeroes (the lm_head's logits would take one block 150 loops).
const ZERO_PER_BLOCK: usize = 8192;

impl CudaQwen3 {
    /// RMSNorm of `rows` rows into f16 `out`, zeroing `zero` (address, f32 count) on the way.
    fn rms_norm(&self, x: u64, w: u64, out: u64, rows: usize, zero: (u64, usize)) -> Result<()> {
        let h = self.config.hidden_size;
        let eps = self.config.rms_norm_eps as f32;
        let blocks = rows.max(zero.1.div_ceil(ZERO_PER_BLOCK));
        self.launch(
            &self.kernels.rms_norm,
            grid((blocks, 1), 1024),
            &[
                Arg::Ptr(x),
                Arg::Ptr(w),
                Arg::Ptr(out),
                int(h),
                int(rows),
                Arg::Float(eps),
                Arg::Ptr(zero.0),
                int(zero.1),
            ],
        )
    }

    /// Every layer over the uploaded chunk of m ids at positions start..start+m; leaves the final
    /// normed rows in scratch. For m = 1 it launches only graph-safe work (no cuBLAS, no host copies).
    /// `attn_chunks` is the decode attention's grid (m = 1): blocks per KV head, each taking one or
    /// more of the (start + 1) / 64 (rounded up) tiles.
    pub(super) fn run_layers(&self, m: usize, start: usize, attn_chunks: usize) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (h, hd, inter) = (c.hidden_size, c.head_dim(), c.intermediate_size);
        let ([q, k, v], qkv_all) = self.qkv_rows(m);
        let ([gate, up], gate_up_all) = self.gate_up_rows(m);
        // One row: the GEMVs add into their outputs; layer 0's q/k/v are zeroed by the embedding.
        let qkv_len = if m == 1 { qkv_all } else { 0 };
        match (&self.embed, &self.lm_head) {
            (Some(Buf { ptr: table, .. }), _)
            | (
                None,
                Linear::Dense {
                    weight: Buf { ptr: table, .. },
                    ..
                },
            ) => self.launch_with(
                &self.kernels.embed_f16,
                grid((m, h.div_ceil(256)), 256),
                &[
                    Arg::Ptr(*table),
                    Arg::Ptr(s.ids.ptr),
                    Arg::Ptr(s.hidden.ptr),
                    int(h),
                    Arg::Ptr(q),
                    int(qkv_len),
                ],
                false,
            )?,
            (
                None,
                Linear::Awq {
                    qweight,
                    qzeros,
                    scales,
                    group,
                    ..
                },
            ) => self.launch_with(
                &self.kernels.embed_awq,
                grid((m, h.div_ceil(256)), 256),
                &[
                    Arg::Ptr(qweight.ptr),
                    Arg::Ptr(qzeros.ptr),
                    Arg::Ptr(scales.ptr),
                    Arg::Ptr(s.ids.ptr),
                    Arg::Ptr(s.hidden.ptr),
                    int(h),
                    int(c.vocab_size),
                    int(*group),
                    Arg::Ptr(q),
                    int(qkv_len),
                ],
                false,
            )?,
            (None, Linear::Int8 { .. }) => bail!("an int8 lm_head is never the embedding table"),
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let gate_up_len = if m == 1 { gate_up_all } else { 0 };
        for layer in &self.layers {
            if m == 1 && self.fused_decode {
                self.decode_layer_awq(layer, scale, attn_chunks)?;
                continue;
            }
            // One row: the GEMVs add into their outputs, which the norm zeroes first.
            self.rms_norm(
                s.hidden.ptr,
                layer.input_norm.ptr,
                s.normed.ptr,
                m,
                (q, qkv_len),
            )?;
            self.linears(
                &[(&layer.q_proj, q), (&layer.k_proj, k), (&layer.v_proj, v)],
                s.normed.ptr,
                m,
            )?;
            if m == 1 {
                self.attention_decode(layer, scale, attn_chunks, true)?;
            } else {
                self.attention_prefill(layer, m, start, scale)?;
            }
            self.linear_into(&layer.o_proj, s.attn_rows.ptr, m, s.hidden.ptr, true)?;
            self.rms_norm(
                s.hidden.ptr,
                layer.post_attention_norm.ptr,
                s.normed.ptr,
                m,
                (gate, gate_up_len),
            )?;
            self.linears(
                &[(&layer.gate_proj, gate), (&layer.up_proj, up)],
                s.normed.ptr,
                m,
            )?;
            if m == 1 && matches!(layer.down_proj, Linear::Awq { .. }) {
                let input = GemvInput::SiluOf { gate, up };
                self.awq_gemv(&[(&layer.down_proj, s.hidden.ptr)], input, (0, 0))?;
            } else {
                let n = m * inter;
                self.launch(
                    &self.kernels.silu_mul,
                    grid((n.div_ceil(256), 1), 256),
                    &[Arg::Ptr(gate), Arg::Ptr(up), Arg::Ptr(s.act.ptr), int(n)],
                )?;
                self.linear_into(&layer.down_proj, s.act.ptr, m, s.hidden.ptr, true)?;
            }
        }
        // A one-row AWQ lm_head adds into the logits: zero them here rather than in a memset, which
        // would break the chain of overlapping kernels in the decode graph.
        let logits = match self.lm_head {
            Linear::Awq { .. } => (s.logits.ptr, self.config.vocab_size),
            Linear::Dense { .. } | Linear::Int8 { .. } => (0, 0),
        };
        self.rms_norm(s.hidden.ptr, self.norm.ptr, s.final_normed.ptr, m, logits)
    }

    /// The leading arguments of the kernels that apply q/k-norm and RoPE (attn_decode, qk_norm_rope):
    /// the m-row chunk's q, k and v, the layer's norm weights and the RoPE tables.
    pub(super) fn norm_rope_args(&self, layer: &Layer, m: usize) -> [Arg; 7] {
        let [q, k, v] = self.qkv_rows(m).0;
        [
            Arg::Ptr(q),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::Ptr(layer.q_norm.ptr),
            Arg::Ptr(layer.k_norm.ptr),
            Arg::Ptr(self.rope_cos.ptr),
            Arg::Ptr(self.rope_sin.ptr),
        ]
    }

    /// Where q, k and v of an m-row chunk lie in `scratch.qkv` ([m][heads·hd], then k, then v) and the
    /// f32 count of all three: the one layout every kernel that writes, reads or zeroes them uses.
    pub(super) fn qkv_rows(&self, m: usize) -> ([u64; 3], usize) {
        let c = &self.config;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let qkv = &self.scratch.qkv;
        (
            [qkv.ptr, qkv.at(m * nh * hd), qkv.at(m * (nh + nkv) * hd)],
            m * (nh + 2 * nkv) * hd,
        )
    }

    /// Where gate and up of an m-row chunk lie in `scratch.gate_up`, and the f32 count of both.
    pub(super) fn gate_up_rows(&self, m: usize) -> ([u64; 2], usize) {
        let inter = self.config.intermediate_size;
        let gate_up = &self.scratch.gate_up;
        ([gate_up.ptr, gate_up.at(m * inter)], 2 * m * inter)
    }

    /// Launches the lm_head over `rows` final normed rows from row `first` into `logits`.
    pub(super) fn lm_head(&self, first: usize, rows: usize, logits: u64) -> Result<()> {
        let h = self.config.hidden_size;
        self.linear(
            &self.lm_head,
            self.scratch.final_normed.at(first * h),
            rows,
            logits,
        )
    }
}
