//! The fast AWQ path: weights repacked at load (still 4-bit) so each output column block is one
//! contiguous stream, activations quantized to int8 per group, and integer dot products (AVX-512 VNNI
//! `vpdpbusd`, or AVX2 `vpmaddubsw`). This is the same trade llama.cpp makes for Q4_0 × Q8 matmuls;
//! `Precision::Exact` keeps f32 activations for bit-faithful parity checks.
//!
//! Repacked layout: for word column c (8 output columns), group g, and chunk i (8 input rows), 32 bytes
//! where byte 4j+b holds, for output column 8c+j, q[row 8i+b] in its low nibble and q[row 8i+4+b] in its
//! high nibble (rows counted within the group). Each group's chunks are followed by a 32-byte header: the
//! 8 columns' f16 scales, then their zero points as bytes (8 bytes of padding keep chunks aligned).
//! Blocks are ordered [c][g], so one column block is a single stream: the checkpoint's scales and zeros,
//! a row of `out` values per group, would otherwise be a scattered read per group (llama.cpp's Q4_0
//! repack interleaves its scales the same way).

use super::awq::{AwqLinear, SharedOut, unpack_word};
use super::dense::assert_matmul_lens;
use super::int8_matrix::quantize_group;
use half::f16;
use rayon::prelude::*;

pub struct Int8AwqLinear {
    pub in_features: usize,
    pub out_features: usize,
    pub group_size: usize,
    /// Anonymous memory asking for huge pages: the weights are streamed every token, and 4 KiB pages
    /// cost a TLB miss per 4 KiB of weights.
    packed: memmap2::MmapMut,
}

/// Bytes of a group's header: 8 f16 scales, 8 zero points, 8 bytes of padding.
const HEADER: usize = 32;

/// Output word columns per task.
const WORDS_PER_TASK: usize = 8;

/// Activations of m rows quantized per group: x ≈ dx[t][g] · x8[t][k].
struct QuantizedRows {
    x8: Vec<i8>,
    dx: Vec<f32>,
    /// Σ x8 over each group, for the zero-point term.
    sum8: Vec<i32>,
}

impl Int8AwqLinear {
    /// Bytes of its repacked weights, zeros and scales: what one pass over the layer reads.
    pub fn bytes(&self) -> usize {
        self.packed.len()
    }

    /// Bytes of one group of one column block: its chunks and header.
    fn group_stride(&self) -> usize {
        self.group_size * 4 + HEADER
    }

    /// Repacks the mapped AWQ tensors; the original pages are released afterwards so the weights stay
    /// in memory once.
    ///
    /// # Panics
    /// When the group size is not a multiple of 8 (the repacked chunks hold 8 rows; config.rs rejects
    /// such checkpoints).
    pub fn from_awq(linear: AwqLinear) -> Self {
        let (inf, outf, group) = (linear.in_features, linear.out_features, linear.group_size);
        assert!(
            group.is_multiple_of(8),
            "Int8AwqLinear::from_awq: group size {group} is not a multiple of 8"
        );
        let (qweight, qzeros, scales) = linear.into_parts();
        let words = outf / 8;
        let groups = inf / group;
        let stride = group * 4 + HEADER;
        let mut packed = memmap2::MmapMut::map_anon(words * groups * stride)
            .expect("allocating the repacked weights");
        #[cfg(target_os = "linux")]
        let _ = packed.advise(memmap2::Advice::HugePage);
        packed
            .par_chunks_mut(groups * stride)
            .enumerate()
            .for_each(|(c, column)| {
                for (g, block) in column.chunks_exact_mut(stride).enumerate() {
                    let (data, header) = block.split_at_mut(group * 4);
                    for (i, chunk) in data.chunks_exact_mut(32).enumerate() {
                        for b in 0..4 {
                            let lo = unpack_word(qweight[(g * group + 8 * i + b) * words + c]);
                            let hi = unpack_word(qweight[(g * group + 8 * i + 4 + b) * words + c]);
                            for j in 0..8 {
                                chunk[4 * j + b] = lo[j] | (hi[j] << 4);
                            }
                        }
                    }
                    for j in 0..8 {
                        let scale = scales[g * outf + 8 * c + j].to_bits().to_le_bytes();
                        header[2 * j..2 * j + 2].copy_from_slice(&scale);
                    }
                    header[16..24].copy_from_slice(&unpack_word(qzeros[g * words + c]));
                }
            });
        qweight.release();
        qzeros.release();
        scales.release();
        Int8AwqLinear {
            in_features: inf,
            out_features: outf,
            group_size: group,
            packed,
        }
    }

    fn quantize_rows(&self, x: &[f32], m: usize) -> QuantizedRows {
        let (inf, group) = (self.in_features, self.group_size);
        let groups = inf / group;
        let mut rows = QuantizedRows {
            x8: vec![0; m * inf],
            dx: vec![0.0; m * groups],
            sum8: vec![0; m * groups],
        };
        for t in 0..m {
            for g in 0..groups {
                let range = t * inf + g * group..t * inf + (g + 1) * group;
                rows.dx[t * groups + g] =
                    quantize_group(&x[range.clone()], &mut rows.x8[range.clone()]);
                rows.sum8[t * groups + g] = rows.x8[range].iter().map(|&q| q as i32).sum();
            }
        }
        rows
    }

    /// y ≈ x · W for m rows, multi-threaded over output column blocks. Each task keeps one column
    /// block's weights (in/2 bytes per 8 columns) hot in cache while it runs every row over them.
    ///
    /// # Panics
    /// When x does not hold m × in_features values or y m × out_features.
    pub fn forward(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (inf, outf) = (self.in_features, self.out_features);
        assert_matmul_lens("Int8AwqLinear::forward", (x.len(), inf), (y.len(), outf), m);
        let rows = self.quantize_rows(x, m);
        let words = self.out_features / 8;
        let out = SharedOut(y.as_mut_ptr());
        let tasks = words.div_ceil(WORDS_PER_TASK);
        (0..tasks).into_par_iter().for_each(|task| {
            let c0 = task * WORDS_PER_TASK;
            for c in c0..(c0 + WORDS_PER_TASK).min(words) {
                let mut t = 0;
                while t < m {
                    let block = (m - t).min(4);
                    let mut column = [[0f32; 8]; 4];
                    self.column(&rows, t, block, c, &mut column);
                    for (r, values) in column.iter().take(block).enumerate() {
                        let at = (t + r) * self.out_features + 8 * c;
                        // SAFETY: columns 8c..8c+8 belong to this task alone.
                        unsafe {
                            std::ptr::copy_nonoverlapping(values.as_ptr(), out.ptr().add(at), 8)
                        };
                    }
                    t += block;
                }
            }
        });
    }

    /// Output columns 8c..8c+8 for rows t..t+block, over all groups.
    fn column(
        &self,
        rows: &QuantizedRows,
        t: usize,
        block: usize,
        c: usize,
        out: &mut [[f32; 8]; 4],
    ) {
        let column = self.in_features / self.group_size * self.group_stride();
        let args = ColumnArgs {
            data: &self.packed[c * column..(c + 1) * column],
            rows,
            inf: self.in_features,
            group: self.group_size,
            t,
        };
        #[cfg(target_arch = "x86_64")]
        {
            let vnni = std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl");
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if avx2 {
                // SAFETY: the needed features are present; indices stay inside the column's data.
                unsafe {
                    match (vnni, block) {
                        (true, 1) => x86::column_vnni::<1>(&args, out),
                        (true, 2) => x86::column_vnni::<2>(&args, out),
                        (true, 3) => x86::column_vnni::<3>(&args, out),
                        (true, _) => x86::column_vnni::<4>(&args, out),
                        (false, 1) => x86::column_avx2::<1>(&args, out),
                        (false, 2) => x86::column_avx2::<2>(&args, out),
                        (false, 3) => x86::column_avx2::<3>(&args, out),
                        (false, _) => x86::column_avx2::<4>(&args, out),
                    }
                }
                return;
            }
        }
        args.portable(block, out);
    }
}

/// What the column kernels read.
struct ColumnArgs<'a> {
    /// This column block's groups, each [chunk][32 bytes] then its header.
    data: &'a [u8],
    rows: &'a QuantizedRows,
    inf: usize,
    group: usize,
    t: usize,
}

impl ColumnArgs<'_> {
    /// Plain Rust for CPUs without AVX2 (and the reference the SIMD kernels are tested against).
    fn portable(&self, block: usize, out: &mut [[f32; 8]; 4]) {
        let groups = self.inf / self.group;
        let stride = self.group * 4 + HEADER;
        for g in 0..groups {
            let (group_data, header) =
                self.data[g * stride..(g + 1) * stride].split_at(self.group * 4);
            for (r, out_row) in out.iter_mut().enumerate().take(block) {
                let row = self.t + r;
                let x = &self.rows.x8[row * self.inf + g * self.group..];
                let mut dots = [0i32; 8];
                for (i, chunk) in group_data.chunks_exact(32).enumerate() {
                    for (j, dot) in dots.iter_mut().enumerate() {
                        for b in 0..4 {
                            let byte = chunk[4 * j + b];
                            *dot += (byte & 0xF) as i32 * x[8 * i + b] as i32
                                + (byte >> 4) as i32 * x[8 * i + 4 + b] as i32;
                        }
                    }
                }
                let (dx, sum8) = (
                    self.rows.dx[row * groups + g],
                    self.rows.sum8[row * groups + g],
                );
                for j in 0..8 {
                    let s = f16::from_le_bytes([header[2 * j], header[2 * j + 1]]).to_f32();
                    out_row[j] += s * dx * (dots[j] - header[16 + j] as i32 * sum8) as f32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ColumnArgs, HEADER};
    use std::arch::x86_64::*;

    /// Prefetch distance in the weight stream.
    const PREFETCH_BYTES: usize = 1024;

    /// R rows × 8 columns over all groups. Per group: integer dots over the chunks, then
    /// y += s·dx·(dot − z·Σx8) in f32.
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub(super) unsafe fn column_vnni<const R: usize>(a: &ColumnArgs, out: &mut [[f32; 8]; 4]) {
        unsafe { column::<R, true>(a, out) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn column_avx2<const R: usize>(a: &ColumnArgs, out: &mut [[f32; 8]; 4]) {
        unsafe { column::<R, false>(a, out) }
    }

    /// Inlined into the two entry points above, which set the target features it is compiled with.
    #[inline(always)]
    unsafe fn column<const R: usize, const VNNI: bool>(a: &ColumnArgs, out: &mut [[f32; 8]; 4]) {
        unsafe {
            let groups = a.inf / a.group;
            let chunks = a.group / 8;
            let stride = a.group * 4 + HEADER;
            let mask = _mm256_set1_epi8(0x0F);
            let high_mask = _mm256_set1_epi8(0xF0u8 as i8);
            let ones = _mm256_set1_epi16(1);
            let mut y = [_mm256_setzero_ps(); R];
            for g in 0..groups {
                // Four independent accumulators per row (lo/hi nibbles of even/odd chunks): the dot
                // instructions' latency, not memory, would otherwise bound single-row decoding.
                let mut acc = [[_mm256_setzero_si256(); 4]; R];
                let data = a.data.as_ptr().add(g * stride);
                // A macro, not a closure, so the body is always inlined with this function's target
                // features and every accumulator index is a constant that stays in a register.
                macro_rules! step {
                    ($i:expr, $lane:expr) => {{
                        let v = _mm256_loadu_si256(data.add(32 * $i) as *const __m256i);
                        let lo = _mm256_and_si256(v, mask);
                        // With VNNI the high nibble is used in place, as 16·q (≤ 240 fits u8), saving
                        // a shift per chunk; its accumulators are divided by 16 (exactly) at the end.
                        // maddubs would saturate on 16·q·x, so the AVX2 path shifts.
                        let hi = if VNNI {
                            _mm256_and_si256(v, high_mask)
                        } else {
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), mask)
                        };
                        for (r, acc_r) in acc.iter_mut().enumerate() {
                            let x = a.rows.x8.as_ptr().add((a.t + r) * a.inf + g * a.group + 8 * $i) as *const i32;
                            let xa = _mm256_set1_epi32(x.read_unaligned());
                            let xb = _mm256_set1_epi32(x.add(1).read_unaligned());
                            if VNNI {
                                acc_r[$lane] = _mm256_dpbusd_epi32(acc_r[$lane], lo, xa);
                                acc_r[$lane + 1] = _mm256_dpbusd_epi32(acc_r[$lane + 1], hi, xb);
                            } else {
                                let pairs =
                                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, xa), _mm256_maddubs_epi16(hi, xb));
                                acc_r[$lane] = _mm256_add_epi32(acc_r[$lane], _mm256_madd_epi16(pairs, ones));
                            }
                        }
                    }};
                }
                let mut i = 0;
                while i + 2 <= chunks {
                    // One cache line per two chunks; fetch well ahead so DRAM latency overlaps compute.
                    _mm_prefetch::<_MM_HINT_T0>(
                        data.wrapping_add(32 * i + PREFETCH_BYTES) as *const i8
                    );
                    step!(i, 0);
                    step!(i + 1, 2);
                    i += 2;
                }
                if i < chunks {
                    step!(i, 0);
                }
                let header = data.add(a.group * 4);
                let s = _mm256_cvtph_ps(_mm_loadu_si128(header as *const __m128i));
                let z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    header.add(16) as *const __m128i
                )));
                for r in 0..R {
                    let row = (a.t + r) * groups + g;
                    let sum = if VNNI {
                        let high = _mm256_srai_epi32(_mm256_add_epi32(acc[r][1], acc[r][3]), 4);
                        _mm256_add_epi32(_mm256_add_epi32(acc[r][0], acc[r][2]), high)
                    } else {
                        _mm256_add_epi32(
                            _mm256_add_epi32(acc[r][0], acc[r][1]),
                            _mm256_add_epi32(acc[r][2], acc[r][3]),
                        )
                    };
                    let dot = _mm256_cvtepi32_ps(sum);
                    let centered = _mm256_fnmadd_ps(
                        z,
                        _mm256_set1_ps(*a.rows.sum8.get_unchecked(row) as f32),
                        dot,
                    );
                    let sdx = _mm256_mul_ps(s, _mm256_set1_ps(*a.rows.dx.get_unchecked(row)));
                    y[r] = _mm256_fmadd_ps(sdx, centered, y[r]);
                }
            }
            for r in 0..R {
                _mm256_storeu_ps(out[r].as_mut_ptr(), y[r]);
            }
        }
    }
}
