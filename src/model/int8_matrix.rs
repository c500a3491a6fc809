//! The lm_head for `Precision::Fast`: the f16 matrix quantized at load to int8 per row and group of 128
//! columns (half the bytes every decoded token must read), multiplied with int8 activations.
//! The f16 pages are released afterwards so the matrix is in memory once.

use super::dense::{assert_matmul_lens, per_output_row};
use super::weights::TensorRef;
use anyhow::Result;
use half::f16;
use rayon::prelude::*;

/// Symmetric int8 quantization of one group: `values ≈ scale · out`, |out| ≤ 127; returns the scale.
pub fn quantize_group(values: &[f32], out: &mut [i8]) -> f32 {
    let max = values.iter().fold(0f32, |a, v| a.max(v.abs()));
    let scale = max / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    for (q, &v) in out.iter_mut().zip(values) {
        // Round half away from zero by truncation: `f32::round` is a libm call on baseline x86-64
        // (~20 ns per element, more than the matmul for small layers).
        let scaled = v * inv;
        *q = (scaled + 0.5f32.copysign(scaled)) as i8;
    }
    scale
}

/// Columns sharing one scale, in weights and activations alike.
const GROUP: usize = 128;
/// Output rows per task.
const ROWS_PER_TASK: usize = 256;

pub struct Int8Matrix {
    pub rows: usize,
    pub cols: usize,
    weights: Vec<i8>,
    /// [rows][cols / GROUP]
    scales: Vec<f32>,
}

impl Int8Matrix {
    /// Bytes of its int8 values and f32 scales.
    pub fn bytes(&self) -> usize {
        self.weights.len() + std::mem::size_of_val(&self.scales[..])
    }

    /// Quantizes an f16 [rows, cols] tensor (cols a multiple of 128); None for other shapes or dtypes,
    /// which then stay in their dense form.
    pub fn from_f16_tensor(tensor: &TensorRef, rows: usize, cols: usize) -> Result<Option<Self>> {
        if !cols.is_multiple_of(GROUP) || tensor.dtype != safetensors::Dtype::F16 {
            return Ok(None);
        }
        let source = tensor.mapped_f16()?;
        anyhow::ensure!(
            Some(source.len()) == rows.checked_mul(cols),
            "a {rows}×{cols} matrix cannot come from a tensor of {} values",
            source.len()
        );
        let groups = cols / GROUP;
        let mut weights = vec![0i8; rows * cols];
        let mut scales = vec![0f32; rows * groups];
        weights
            .par_chunks_mut(cols)
            .zip(scales.par_chunks_mut(groups))
            .enumerate()
            .for_each(|(r, (w, s))| {
                let row: &[f16] = &source[r * cols..(r + 1) * cols];
                let mut block = [0f32; GROUP];
                for g in 0..groups {
                    block
                        .iter_mut()
                        .zip(&row[g * GROUP..(g + 1) * GROUP])
                        .for_each(|(b, v)| *b = v.to_f32());
                    s[g] = quantize_group(&block, &mut w[g * GROUP..(g + 1) * GROUP]);
                }
            });
        source.release();
        Ok(Some(Int8Matrix {
            rows,
            cols,
            weights,
            scales,
        }))
    }

    /// y[t][n] ≈ Σ_k x[t][k] · W[n][k].
    ///
    /// # Panics
    /// When x does not hold m × cols values or y m × rows.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        assert_matmul_lens(
            "Int8Matrix::matmul",
            (x.len(), self.cols),
            (y.len(), self.rows),
            m,
        );
        let groups = self.cols / GROUP;
        let mut x8 = vec![0i8; m * self.cols];
        let mut xs = vec![0f32; m * groups];
        for t in 0..m {
            for g in 0..groups {
                let range = t * self.cols + g * GROUP..t * self.cols + (g + 1) * GROUP;
                xs[t * groups + g] = quantize_group(&x[range.clone()], &mut x8[range]);
            }
        }
        per_output_row(self.rows, m, ROWS_PER_TASK, y, |n, t| {
            let w = &self.weights[n * self.cols..(n + 1) * self.cols];
            let ws = &self.scales[n * groups..(n + 1) * groups];
            let xt = &x8[t * self.cols..(t + 1) * self.cols];
            let xst = &xs[t * groups..(t + 1) * groups];
            (0..groups)
                .map(|g| {
                    dot_i8(
                        &w[g * GROUP..(g + 1) * GROUP],
                        &xt[g * GROUP..(g + 1) * GROUP],
                    ) as f32
                        * ws[g]
                        * xst[g]
                })
                .sum()
        });
    }
}

/// Σ a·b over one group of int8 values.
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // The AVX2 loop reads both slices in 32-byte steps up to a's length.
    assert!(
        a.len() == b.len() && a.len().is_multiple_of(32),
        "dot_i8 takes two groups of equal length, a multiple of 32 (got {} and {})",
        a.len(),
        b.len()
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; both slices hold the same multiple of 32 values (asserted above).
        return unsafe { dot_i8_avx2(a, b) };
    }
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// `maddubs` needs one unsigned operand: multiply |a| by b carrying a's sign (|a|, |b| ≤ 127, so the
/// pairwise i16 sums cannot saturate).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    use std::arch::x86_64::*;
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        for i in (0..a.len()).step_by(32) {
            let va = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
            let vb = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        }
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01));
        _mm_cvtsi128_si32(sum)
    }
}
