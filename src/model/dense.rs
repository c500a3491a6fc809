//! Unquantized matrices in nn.Linear layout [out, in]: the embedding table, the lm_head, and every linear
//! of an unquantized checkpoint. f16 stays in the mapping; bf16/f32 are widened to f32 once at load.

use super::weights::{MappedSlice, TensorRef};
use anyhow::Result;
use half::f16;
use rayon::prelude::*;
use safetensors::Dtype;

pub enum Storage {
    F16(MappedSlice<f16>),
    F32(Vec<f32>),
}

/// A [rows, cols] matrix; `matmul` computes y = x · Wᵀ (rows = output features).
pub struct DenseMatrix {
    pub rows: usize,
    pub cols: usize,
    storage: Storage,
}

/// Output rows per task: large enough to amortize scheduling, small enough to balance 2–128 threads.
const ROWS_PER_TASK: usize = 64;

impl DenseMatrix {
    /// Bytes of its values as stored (f16 mapped, or f32).
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::F16(w) => std::mem::size_of_val(&w[..]),
            Storage::F32(w) => std::mem::size_of_val(&w[..]),
        }
    }

    pub fn from_tensor(tensor: &TensorRef, rows: usize, cols: usize) -> Result<Self> {
        let storage = match tensor.dtype {
            Dtype::F16 => Storage::F16(tensor.mapped_f16()?),
            _ => Storage::F32(tensor.to_f32()?),
        };
        Ok(DenseMatrix {
            rows,
            cols,
            storage,
        })
    }

    /// Copies row `i` as f32 (embedding lookup).
    pub fn row_into(&self, i: usize, out: &mut [f32]) {
        let range = i * self.cols..(i + 1) * self.cols;
        match &self.storage {
            Storage::F16(w) => out
                .iter_mut()
                .zip(&w[range])
                .for_each(|(o, v)| *o = v.to_f32()),
            Storage::F32(w) => out.copy_from_slice(&w[range]),
        }
    }

    /// y[t][n] = Σ_k x[t][k] · W[n][k] for m rows of x.
    ///
    /// # Panics
    /// When x does not hold m × cols values or y m × rows.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        assert_matmul_lens("DenseMatrix::matmul", (x.len(), cols), (y.len(), rows), m);
        per_output_row(rows, m, ROWS_PER_TASK, y, |n, t| {
            let xt = &x[t * cols..(t + 1) * cols];
            match &self.storage {
                Storage::F16(w) => dot_f16(xt, &w[n * cols..(n + 1) * cols]),
                Storage::F32(w) => dot(xt, &w[n * cols..(n + 1) * cols]),
            }
        });
    }
}

/// Panics unless x holds `m` rows of `inf` values and y `m` rows of `outf`: the CPU matmuls read and
/// write through raw pointers (SIMD loads, disjoint per-task writes) within exactly those bounds, so a
/// wrong length must stop here, in release builds too, never reach them. `kernel` names the caller.
pub(super) fn assert_matmul_lens(
    kernel: &str,
    (x, inf): (usize, usize),
    (y, outf): (usize, usize),
    m: usize,
) {
    assert!(
        m.checked_mul(inf) == Some(x),
        "{kernel}: x holds {x} values, not m × in_features = {m} × {inf}"
    );
    assert!(
        m.checked_mul(outf) == Some(y),
        "{kernel}: y holds {y} values, not m × out_features = {m} × {outf}"
    );
}

/// y[t][n] = value(n, t) for `rows` outputs and `m` input rows, parallel over blocks of `rows_per_task`
/// outputs: each weight row is read once per call, for all m inputs, while it is in cache.
pub(super) fn per_output_row(
    rows: usize,
    m: usize,
    rows_per_task: usize,
    y: &mut [f32],
    value: impl Fn(usize, usize) -> f32 + Sync,
) {
    let mut yt = vec![0f32; rows * m];
    yt.par_chunks_mut(rows_per_task * m)
        .enumerate()
        .for_each(|(task, out)| {
            for (i, o) in out.chunks_mut(m).enumerate() {
                for (t, v) in o.iter_mut().enumerate() {
                    *v = value(task * rows_per_task + i, t);
                }
            }
        });
    for n in 0..rows {
        for t in 0..m {
            y[t * rows + n] = yt[n * m + t];
        }
    }
}

/// Σ a·b with eight partial sums, so the compiler vectorizes it (a plain `sum()` must stay sequential).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for j in 0..8 {
            acc[j] += ca[j] * cb[j];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: features checked above; the kernel reads within both slices.
        return unsafe { dot_f16_avx2(a, b) };
    }
    a.iter().zip(b).map(|(x, w)| x * w.to_f32()).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(a: &[f32], b: &[f16]) -> f32 {
    unsafe {
        use std::arch::x86_64::*;
        let n = a.len().min(b.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let w =
                    _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8 * j) as *const __m128i));
                *acc_j = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8 * j)), w, *acc_j);
            }
            i += 32;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        let mut total: f32 = lanes.iter().sum();
        while i < n {
            total += a[i] * b[i].to_f32();
            i += 1;
        }
        total
    }
}
