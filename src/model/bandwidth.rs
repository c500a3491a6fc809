//! The machine's memory read bandwidth, measured with the engine's own thread pool: the CPU decode
//! roofline `bench` reports (weights read per token over bytes per second), so decode speed is a
//! fraction of what this machine can stream, comparable across noisy runs.

use rayon::prelude::*;
use std::time::Instant;

/// Bytes streamed per pass: far above any last-level cache, small beside an 8B model.
const PROBE_BYTES: usize = 1 << 30;
/// Passes; the best one counts (the others include page faults and neighbours' bursts).
const PASSES: usize = 5;
/// u64s one task sums: a few MiB, so every thread of the pool streams its own long runs.
const TASK_WORDS: usize = 1 << 19;

/// Read bandwidth in bytes per second: the best of `PASSES` sums of a 1 GiB buffer over the current
/// rayon pool (`--threads`), as the decode kernels stream their weights.
pub fn read_bytes_per_s() -> f64 {
    let words: Vec<u64> = (0..PROBE_BYTES / 8)
        .into_par_iter()
        .map(|i| i as u64)
        .collect();
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let start = Instant::now();
        let sum: u64 = words
            .par_chunks(TASK_WORDS)
            .map(|chunk| chunk.iter().fold(0u64, |a, &w| a.wrapping_add(w)))
            .reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(sum);
        best = best.min(start.elapsed().as_secs_f64());
    }
    PROBE_BYTES as f64 / best
}
