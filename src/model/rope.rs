//! Rotary position embeddings, with YaRN scaling computed exactly as transformers'
//! `_compute_yarn_parameters` (f32 tensors where it uses them, f64 where it uses Python floats).

use super::config::{Qwen3Config, RopeScaling};

pub struct Rope {
    inv_freq: Vec<f32>,
    attention_factor: f32,
}

impl Rope {
    pub fn new(config: &Qwen3Config) -> Self {
        let dim = config.head_dim();
        let base = config.rope_theta;
        let pos_freqs: Vec<f32> = (0..dim / 2)
            .map(|i| base.powf(((2 * i) as f32 / dim as f32) as f64) as f32)
            .collect();
        match &config.rope_scaling {
            Some(scaling) if scaling.rope_type == "yarn" => yarn(config, scaling, &pos_freqs),
            _ => Rope {
                inv_freq: pos_freqs.iter().map(|p| 1.0 / p).collect(),
                attention_factor: 1.0,
            },
        }
    }

    /// cos and sin tables ([positions][head_dim/2]) for the given positions.
    pub fn tables(&self, positions: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for p in positions {
            for &f in &self.inv_freq {
                let angle = f * p as f32;
                cos.push((angle as f64).cos() as f32 * self.attention_factor);
                sin.push((angle as f64).sin() as f32 * self.attention_factor);
            }
        }
        (cos, sin)
    }

    /// Rotates one head vector in place (rotate-half form).
    pub fn apply(x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = x.len() / 2;
        for i in 0..half {
            let (a, b) = (x[i], x[i + half]);
            x[i] = a * cos[i] - b * sin[i];
            x[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

fn yarn(config: &Qwen3Config, scaling: &RopeScaling, pos_freqs: &[f32]) -> Rope {
    let dim = config.head_dim() as f64;
    let base = config.rope_theta;
    let original = scaling
        .original_max_position_embeddings
        .unwrap_or(config.max_position_embeddings);
    let factor = scaling
        .factor
        .unwrap_or(config.max_position_embeddings as f64 / original as f64);
    let get_mscale = |scale: f64, mscale: f64| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * mscale * scale.ln() + 1.0
        }
    };
    let attention_factor =
        scaling
            .attention_factor
            .unwrap_or(match (scaling.mscale, scaling.mscale_all_dim) {
                (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    get_mscale(factor, m) / get_mscale(factor, all)
                }
                _ => get_mscale(factor, 1.0),
            });
    let beta_fast = scaling.beta_fast.filter(|b| *b != 0.0).unwrap_or(32.0);
    let beta_slow = scaling.beta_slow.filter(|b| *b != 0.0).unwrap_or(1.0);
    let correction_dim = |rotations: f64| {
        dim * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
    if scaling.truncate.unwrap_or(true) {
        low = low.floor();
        high = high.ceil();
    }
    let low = low.max(0.0);
    let mut high = high.min(dim - 1.0);
    if low == high {
        high += 0.001;
    }
    let (low, high) = (low as f32, high as f32);
    let factor32 = factor as f32;
    let inv_freq = pos_freqs
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            let interpolation = 1.0 / (factor32 * p);
            let extrapolation = 1.0 / p;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect();
    Rope {
        inv_freq,
        attention_factor: attention_factor as f32,
    }
}
