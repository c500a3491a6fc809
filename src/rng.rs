//! A small seedable generator: reproducible sampling and random checkpoints without a heavier crate.

/// SplitMix64: fast, seedable, and per-tensor so tensors can be generated lazily in any order.
pub struct Rng(u64);

impl Rng {
    /// A generator from a plain seed.
    pub fn seeded(seed: u64) -> Self {
        Rng::new(seed, "")
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl Rng {
    pub fn new(seed: u64, name: &str) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
        }
        Rng(h)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Approximately standard normal (Irwin–Hall of 4 uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let r = self.next_u64();
        let sum: f32 = (0..4)
            .map(|i| ((r >> (16 * i)) & 0xFFFF) as f32 / 65535.0)
            .sum();
        (sum - 2.0) * 3f32.sqrt()
    }
}
