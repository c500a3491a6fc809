//! AutoAWQ GEMM 4-bit linears: the packing format, and matmul kernels that read the packed weights as they
//! are in the checkpoint (no dequantized copy: that would be 16–32 GB for an 8B model).
//!
//! Format (bit-exact: AutoAWQ's `AWQ_REVERSE_ORDER`, checked in tests/awq_kernels.rs): `qweight` is [in, out/8] u32 words; word c
//! of a row holds logical columns 8c..8c+7 with column 8c+j in nibble `UNPACK_NIBBLE[j]`. `qzeros` is
//! [in/group, out/8] packed the same way; `scales` is [in/group, out] f16. W[k][n] = (q − z) · s; y = x·W.

use super::dense::assert_matmul_lens;
use super::weights::MappedSlice;
use half::f16;
use rayon::prelude::*;

/// Logical column stored in nibble i of a word (AutoAWQ's `AWQ_ORDER`).
pub const PACK_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// Nibble holding logical column j (the inverse permutation, AutoAWQ's `AWQ_REVERSE_ORDER`).
pub const UNPACK_NIBBLE: [usize; 8] = [0, 4, 1, 5, 2, 6, 3, 7];

/// Packs 8 logical 4-bit values (columns 8c..8c+7) into one word.
pub fn pack_word(values: [u8; 8]) -> u32 {
    let mut word = 0u32;
    for (nibble, &column) in PACK_ORDER.iter().enumerate() {
        word |= ((values[column] & 0xF) as u32) << (4 * nibble);
    }
    word
}

/// Unpacks a word into its 8 logical 4-bit values.
pub fn unpack_word(word: u32) -> [u8; 8] {
    std::array::from_fn(|j| ((word >> (4 * UNPACK_NIBBLE[j])) & 0xF) as u8)
}

/// One quantized linear layer, borrowing its tensors from the mapped checkpoint.
pub struct AwqLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub group_size: usize,
    qweight: MappedSlice<u32>,
    qzeros: MappedSlice<u32>,
    scales: MappedSlice<f16>,
}

/// Column words handled together by one task: one 64-byte cache line of every row.
const STRIP_WORDS: usize = 16;

impl AwqLinear {
    /// Bytes of its tensors: what one pass over the layer reads.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&self.qweight[..])
            + std::mem::size_of_val(&self.qzeros[..])
            + std::mem::size_of_val(&self.scales[..])
    }

    /// # Panics
    /// When the tensors' lengths do not match the shape (qweight [in][out/8], qzeros [in/group][out/8],
    /// scales [in/group][out]), or out is not a multiple of 8 or in of the group size: the kernels
    /// index them without bounds checks.
    pub fn new(
        in_features: usize,
        out_features: usize,
        group_size: usize,
        qweight: MappedSlice<u32>,
        qzeros: MappedSlice<u32>,
        scales: MappedSlice<f16>,
    ) -> Self {
        let (inf, outf, group) = (in_features, out_features, group_size);
        assert!(
            group > 0 && inf.is_multiple_of(group) && outf.is_multiple_of(8),
            "AwqLinear::new: {inf}×{outf} cannot be AWQ-packed with group size {group}"
        );
        let groups = inf / group;
        for (name, len, want) in [
            ("qweight", qweight.len(), inf * (outf / 8)),
            ("qzeros", qzeros.len(), groups * (outf / 8)),
            ("scales", scales.len(), groups * outf),
        ] {
            assert!(
                len == want,
                "AwqLinear::new: {name} holds {len} values, a {inf}×{outf} layer with group size \
                 {group} needs {want}"
            );
        }
        AwqLinear {
            in_features,
            out_features,
            group_size,
            qweight,
            qzeros,
            scales,
        }
    }

    /// The mapped tensors (qweight, qzeros, scales), for repacking into the fast layout.
    pub fn into_parts(self) -> (MappedSlice<u32>, MappedSlice<u32>, MappedSlice<f16>) {
        (self.qweight, self.qzeros, self.scales)
    }

    /// Column n of W (W[·][n], `in_features` values): a token's row when the layer is a packed embedding.
    pub fn column_into(&self, n: usize, out: &mut [f32]) {
        let words = self.out_features / 8;
        let (word, nibble) = (n / 8, 4 * UNPACK_NIBBLE[n % 8]);
        for (k, o) in out.iter_mut().enumerate().take(self.in_features) {
            let g = k / self.group_size;
            let q = (self.qweight[k * words + word] >> nibble) & 0xF;
            let z = (self.qzeros[g * words + word] >> nibble) & 0xF;
            *o = (q as f32 - z as f32) * self.scales[g * self.out_features + n].to_f32();
        }
    }

    /// The dequantized weight W[k][n] (tests and the reference path only: never the whole model).
    pub fn dequantize(&self) -> Vec<f32> {
        let words = self.out_features / 8;
        let mut w = vec![0f32; self.in_features * self.out_features];
        for k in 0..self.in_features {
            let g = k / self.group_size;
            for c in 0..words {
                let q = unpack_word(self.qweight[k * words + c]);
                let z = unpack_word(self.qzeros[g * words + c]);
                for j in 0..8 {
                    let n = 8 * c + j;
                    let s = self.scales[g * self.out_features + n].to_f32();
                    w[k * self.out_features + n] = (q[j] as f32 - z[j] as f32) * s;
                }
            }
        }
        w
    }

    /// y = x · W for `m` rows of x ([m, in] → [m, out]), multi-threaded over column strips.
    ///
    /// # Panics
    /// When x does not hold m × in_features values or y m × out_features.
    pub fn forward(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (inf, outf, group) = (self.in_features, self.out_features, self.group_size);
        assert_matmul_lens("AwqLinear::forward", (x.len(), inf), (y.len(), outf), m);
        let groups = inf / group;
        let xsum: Vec<f32> = (0..m)
            .flat_map(|t| (0..groups).map(move |g| (t, g)))
            .map(|(t, g)| {
                x[t * inf + g * group..t * inf + (g + 1) * group]
                    .iter()
                    .sum()
            })
            .collect();
        let words = outf / 8;
        let out = SharedOut(y.as_mut_ptr());
        let strips = words.div_ceil(STRIP_WORDS);
        (0..strips).into_par_iter().for_each(|strip| {
            let w0 = strip * STRIP_WORDS;
            let w1 = (w0 + STRIP_WORDS).min(words);
            let view = KernelArgs {
                x,
                xsum: &xsum,
                qweight: &self.qweight,
                qzeros: &self.qzeros,
                scales: &self.scales,
                inf,
                outf,
                group,
                out: &out,
            };
            view.run(m, w0, w1);
        });
    }
}

/// The output pointer shared by tasks that write disjoint column ranges.
pub(super) struct SharedOut(pub(super) *mut f32);
// SAFETY: every task writes only the columns of its own range, so writes never overlap.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(super) fn ptr(&self) -> *mut f32 {
        self.0
    }
}

struct KernelArgs<'a> {
    x: &'a [f32],
    xsum: &'a [f32],
    qweight: &'a [u32],
    qzeros: &'a [u32],
    scales: &'a [f16],
    inf: usize,
    outf: usize,
    group: usize,
    out: &'a SharedOut,
}

impl KernelArgs<'_> {
    /// Computes columns of words [w0, w1) for all m rows, in blocks of up to 4 rows.
    fn run(&self, m: usize, w0: usize, w1: usize) {
        let mut t = 0;
        while t < m {
            let rows = (m - t).min(4);
            let done = self.run_simd(t, rows, w0, w1);
            self.run_portable(t, rows, done, w1);
            t += rows;
        }
    }

    /// The SIMD kernel for as many whole sub-blocks as fit; returns the first word it did not do.
    fn run_simd(&self, t: usize, rows: usize, w0: usize, w1: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked above); indices stay in bounds (see kernel).
            return unsafe {
                match rows {
                    1 => x86::block::<1, 8>(self, t, w0, w1),
                    2 => x86::block::<2, 4>(self, t, w0, w1),
                    3 => x86::block::<3, 2>(self, t, w0, w1),
                    _ => x86::block::<4, 2>(self, t, w0, w1),
                }
            };
        }
        let _ = (t, rows, w1);
        w0
    }

    /// Plain Rust for CPUs without AVX2 and for leftover words.
    fn run_portable(&self, t0: usize, rows: usize, w0: usize, w1: usize) {
        let words = self.outf / 8;
        let groups = self.inf / self.group;
        for t in t0..t0 + rows {
            let x = &self.x[t * self.inf..(t + 1) * self.inf];
            for c in w0..w1 {
                let mut y = [0f32; 8];
                for g in 0..groups {
                    let mut acc = [0f32; 8];
                    let first = g * self.group;
                    for (k, &xk) in (first..).zip(&x[first..first + self.group]) {
                        let q = unpack_word(self.qweight[k * words + c]);
                        for j in 0..8 {
                            acc[j] += q[j] as f32 * xk;
                        }
                    }
                    let z = unpack_word(self.qzeros[g * words + c]);
                    for j in 0..8 {
                        let s = self.scales[g * self.outf + 8 * c + j].to_f32();
                        y[j] += s * (acc[j] - z[j] as f32 * self.xsum[t * groups + g]);
                    }
                }
                for (j, value) in y.into_iter().enumerate() {
                    // SAFETY: column 8c+j of row t belongs to this task's strip.
                    unsafe { *self.out.0.add(t * self.outf + 8 * c + j) = value };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::KernelArgs;
    use std::arch::x86_64::*;

    /// How many rows ahead to prefetch: enough to cover DRAM latency at one row per few nanoseconds.
    const PREFETCH_ROWS: usize = 16;

    /// Rows t..t+T, words [w0, w1) in sub-blocks of W words (8·W columns), T·W = 8 accumulators so FMA
    /// latency is hidden. Per group the inner loop accumulates Σ x·q; the epilogue applies
    /// y += s·(Σ x·q − z·Σ x). Returns the first word not processed (the tail goes to the portable code).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn block<const T: usize, const W: usize>(
        a: &KernelArgs,
        t: usize,
        w0: usize,
        w1: usize,
    ) -> usize {
        unsafe {
            let words = a.outf / 8;
            let groups = a.inf / a.group;
            let shifts = _mm256_setr_epi32(0, 16, 4, 20, 8, 24, 12, 28);
            let mask = _mm256_set1_epi32(0xF);
            let unpack = |word: u32| -> __m256 {
                _mm256_cvtepi32_ps(_mm256_and_si256(
                    _mm256_srlv_epi32(_mm256_set1_epi32(word as i32), shifts),
                    mask,
                ))
            };
            let mut w = w0;
            while w + W <= w1 {
                let mut y = [[_mm256_setzero_ps(); W]; T];
                for g in 0..groups {
                    let mut acc = [[_mm256_setzero_ps(); W]; T];
                    for k in g * a.group..(g + 1) * a.group {
                        let row = a.qweight.as_ptr().add(k * words + w);
                        // Rows are a large stride apart, which hardware prefetchers do not follow
                        // across pages: fetch this strip of a row well ahead of its use.
                        if k + PREFETCH_ROWS < a.inf {
                            _mm_prefetch::<_MM_HINT_T0>(row.add(PREFETCH_ROWS * words) as *const i8);
                        }
                        let mut q = [_mm256_setzero_ps(); W];
                        for (j, qj) in q.iter_mut().enumerate() {
                            *qj = unpack(*row.add(j));
                        }
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let xk = _mm256_set1_ps(*a.x.get_unchecked((t + r) * a.inf + k));
                            for j in 0..W {
                                acc_r[j] = _mm256_fmadd_ps(q[j], xk, acc_r[j]);
                            }
                        }
                    }
                    for j in 0..W {
                        let z = unpack(*a.qzeros.get_unchecked(g * words + w + j));
                        let s = _mm256_cvtph_ps(_mm_loadu_si128(
                            a.scales.as_ptr().add(g * a.outf + 8 * (w + j)) as *const __m128i,
                        ));
                        for r in 0..T {
                            let xs = _mm256_set1_ps(*a.xsum.get_unchecked((t + r) * groups + g));
                            let centered = _mm256_fnmadd_ps(z, xs, acc[r][j]);
                            y[r][j] = _mm256_fmadd_ps(s, centered, y[r][j]);
                        }
                    }
                }
                for (r, row) in y.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        _mm256_storeu_ps(a.out.0.add((t + r) * a.outf + 8 * (w + j)), v);
                    }
                }
                w += W;
            }
            w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_order_matches_the_documented_words() {
        // Logical columns 0..7 holding 0..7: nibble i holds column PACK_ORDER[i] → 0x75316420.
        assert_eq!(pack_word([0, 1, 2, 3, 4, 5, 6, 7]), 0x7531_6420);
        assert_eq!(unpack_word(0x7531_6420), [0, 1, 2, 3, 4, 5, 6, 7]);
        // Only column 1 set to 15 lives in nibble 4 (bits 16..19).
        assert_eq!(pack_word([0, 15, 0, 0, 0, 0, 0, 0]), 0x000F_0000);
        assert_eq!(unpack_word(0x0000_00F0), [0, 0, 15, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn pack_unpack_round_trips() {
        for seed in 0..1000u32 {
            let values: [u8; 8] =
                std::array::from_fn(|i| ((seed.wrapping_mul(2654435761) >> (i * 3)) & 0xF) as u8);
            assert_eq!(unpack_word(pack_word(values)), values);
        }
    }
}
