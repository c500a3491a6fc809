//! Linear layers on the device: the fused int4 decode GEMV (up to three matrices and a computed
//! input per launch), dequantize-then-cuBLAS for prefill, and the int8 and f16 GEMVs.

use super::CudaQwen3;
use super::device::{Arg, AwqMatrix, grid, int};
use super::formats::Linear;
use anyhow::{Result, bail, ensure};
use cudarc::driver::LaunchConfig;

/// Most rows of K one block of the decode GEMV takes (GEMV_MAX_ROWS in kernels.cu: its shared input).
pub(super) const GEMV_MAX_ROWS: usize = 1024;
/// Blocks of the decode GEMV one multiprocessor holds at once (its __launch_bounds__ in kernels.cu),
/// and of its variant that joins the attention's parts (awq_gemv_attn, more registers).
const GEMV_BLOCKS_PER_SM: usize = 6;
const GEMV_ATTN_BLOCKS_PER_SM: usize = 4;
/// Rows of the int8 lm_head one block of i8_gemv computes (I8_ROWS_PER_BLOCK in kernels.cu).
const I8_ROWS_PER_BLOCK: usize = 64;

/// What the decode GEMV multiplies, computed as it reads: an f16 row, the decode attention's output
/// joined from its per-chunk parts (`chunks`: the attention's grid), silu(gate) · up (f32 rows), or
/// the RMSNorm of the f32 row `x` with `weight` (each block sums the row's squares itself), so none
/// needs a kernel of its own.
#[derive(Clone, Copy)]
pub(super) enum GemvInput {
    Row(u64),
    AttentionParts { chunks: usize },
    SiluOf { gate: u64, up: u64 },
    Normed { x: u64, weight: u64 },
}

impl CudaQwen3 {
    /// y[m][out] = x[m][in] · W for f16 x. With one row, an AWQ layer adds into y (its blocks meet in
    /// atomics): the caller zeroes y first.
    pub(super) fn linear(&self, l: &Linear, x: u64, m: usize, y: u64) -> Result<()> {
        self.linear_into(l, x, m, y, false)
    }

    /// `linear` for layers sharing their input (q/k/v, gate/up): one launch for a decode step when they
    /// are all AWQ with the same input shape.
    pub(super) fn linears(&self, jobs: &[(&Linear, u64)], x: u64, m: usize) -> Result<()> {
        let shape = |l: &Linear| match l {
            Linear::Awq { inf, group, .. } => Some((*inf, *group)),
            Linear::Dense { .. } | Linear::Int8 { .. } => None,
        };
        let first = shape(jobs[0].0);
        if m == 1 && first.is_some() && jobs.iter().all(|(l, _)| shape(l) == first) {
            return self.awq_gemv(jobs, GemvInput::Row(x), (0, 0));
        }
        jobs.iter().try_for_each(|&(l, y)| self.linear(l, x, m, y))
    }

    /// One launch of the decode GEMV over up to three AWQ matrices with the same input; it also zeroes
    /// `zero` (address, f32 count) once the kernels before it have finished: a later GEMV's outputs.
    /// It adds into its outputs: the caller zeroes them, or passes the residual row.
    pub(super) fn awq_gemv(
        &self,
        jobs: &[(&Linear, u64)],
        input: GemvInput,
        zero: (u64, usize),
    ) -> Result<()> {
        let mut matrices = [AwqMatrix::default(); 3];
        let (mut inf, mut group) = (0, 0);
        for (slot, &(l, y)) in matrices.iter_mut().zip(jobs) {
            let Linear::Awq {
                qweight,
                qzeros,
                scales,
                inf: k,
                outf,
                group: g,
            } = l
            else {
                bail!("the fused GEMV takes AWQ layers only");
            };
            *slot = AwqMatrix {
                qweight: qweight.ptr,
                qzeros: qzeros.ptr,
                scales: scales.ptr,
                y,
                n: *outf as i32,
            };
            (inf, group) = (*k, *g);
        }
        // As many blocks as fit at once (the kernel's launch bounds) and no more: a second, partial wave
        // would nearly double the time. Rows per block: whole groups, at least 128 (fewer would only add
        // atomics), at most GEMV_MAX_ROWS (the block's shared input).
        let strips: usize = jobs.iter().map(|(l, _)| l.dims().1.div_ceil(256)).sum();
        let (kernel, per_sm) = match input {
            GemvInput::AttentionParts { .. } => {
                (&self.kernels.awq_gemv_attn, GEMV_ATTN_BLOCKS_PER_SM)
            }
            _ => (&self.kernels.awq_gemv, GEMV_BLOCKS_PER_SM),
        };
        let splits = (per_sm * self.multiprocessors / strips).max(1);
        let rows_per_block = inf
            .div_ceil(splits)
            .next_multiple_of(group.max(128).min(inf))
            .min(GEMV_MAX_ROWS)
            .min(inf);
        let cfg = LaunchConfig {
            grid_dim: (strips as u32, inf.div_ceil(rows_per_block) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let [m0, m1, m2] = matrices;
        let s = &self.scratch;
        let (x, gate, up, norm_x, norm_w) = match input {
            GemvInput::Row(x) => (x, 0, 0, 0, 0),
            GemvInput::AttentionParts { .. } => (0, 0, 0, 0, 0),
            GemvInput::SiluOf { gate, up } => (0, gate, up, 0, 0),
            GemvInput::Normed { x, weight } => (0, 0, 0, x, weight),
        };
        let (attn_partial, attn_chunks) = match input {
            GemvInput::AttentionParts { chunks } => (s.partial.ptr, chunks),
            _ => (0, 0),
        };
        self.launch(
            kernel,
            cfg,
            &[
                Arg::Matrix(m0),
                Arg::Matrix(m1),
                Arg::Matrix(m2),
                Arg::Ptr(x),
                Arg::Ptr(gate),
                Arg::Ptr(up),
                Arg::Ptr(norm_x),
                Arg::Ptr(norm_w),
                Arg::Ptr(attn_partial),
                Arg::Ptr(s.step.ptr),
                int(attn_chunks),
                int(self.config.head_dim()),
                Arg::Float(self.config.rms_norm_eps as f32),
                Arg::Ptr(zero.0),
                int(zero.1),
                int(inf),
                int(group.trailing_zeros() as usize - 5),
                int(rows_per_block),
            ],
        )
    }

    /// y[m][out] (+)= x[m][in] · W; `accumulate` adds to y (the residual stream).
    pub(super) fn linear_into(
        &self,
        l: &Linear,
        x: u64,
        m: usize,
        y: u64,
        accumulate: bool,
    ) -> Result<()> {
        let (inf, outf) = l.dims();
        match l {
            Linear::Awq { .. } if m == 1 => self.awq_gemv(&[(l, y)], GemvInput::Row(x), (0, 0)),
            Linear::Awq {
                qweight,
                qzeros,
                scales,
                group,
                ..
            } => {
                let w = self.scratch.dequant.ptr;
                let words = inf * outf / 8;
                self.launch(
                    &self.kernels.awq_dequant,
                    grid((words.div_ceil(256), 1), 256),
                    &[
                        Arg::Ptr(qweight.ptr),
                        Arg::Ptr(qzeros.ptr),
                        Arg::Ptr(scales.ptr),
                        Arg::Ptr(w),
                        int(inf),
                        int(outf),
                        int(*group),
                    ],
                )?;
                // Row-major Y[m][out] = X[m][in]·W[in][out] is column-major Yᵀ = Wᵀ·Xᵀ.
                let beta = if accumulate { 1.0 } else { 0.0 };
                self.gemm(
                    false,
                    (outf, m, inf),
                    (w, outf, 0),
                    (x, inf, 0),
                    (y, outf, 0, true),
                    1.0,
                    beta,
                    1,
                )
            }
            Linear::Int8 { weight, scales, .. } => {
                ensure!(!accumulate, "the int8 lm_head does not add into its output");
                self.launch(
                    &self.kernels.i8_gemv,
                    grid((outf.div_ceil(I8_ROWS_PER_BLOCK), m), 256),
                    &[
                        Arg::Ptr(weight.ptr),
                        Arg::Ptr(scales.ptr),
                        Arg::Ptr(x),
                        Arg::Ptr(y),
                        int(inf),
                        int(outf),
                    ],
                )
            }
            Linear::Dense { weight, .. } if m == 1 => {
                let acc = accumulate as i32;
                self.launch(
                    &self.kernels.dense_gemv,
                    grid((outf.div_ceil(8), 1), 256),
                    &[
                        Arg::Ptr(weight.ptr),
                        Arg::Ptr(x),
                        Arg::Ptr(y),
                        int(inf),
                        int(outf),
                        Arg::Int(acc),
                    ],
                )
            }
            Linear::Dense { weight, .. } => {
                let beta = if accumulate { 1.0 } else { 0.0 };
                self.gemm(
                    true,
                    (outf, m, inf),
                    (weight.ptr, inf, 0),
                    (x, inf, 0),
                    (y, outf, 0, true),
                    1.0,
                    beta,
                    1,
                )
            }
        }
    }
}
