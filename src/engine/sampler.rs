//! Choosing the next token from logits: penalties, temperature, top-k, top-p, min-p, seeded sampling.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Sampling parameters; temperature 0 means greedy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// Subtracted once from the logit of every token already generated (OpenAI/vLLM semantics).
    pub presence_penalty: f32,
    /// Divides positive / multiplies negative logits of tokens seen in prompt or output (HF semantics).
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl SamplingParams {
    /// Qwen3's recommended settings: thinking 0.6/0.95/20/0, non-thinking 0.7/0.8/20/0.
    pub fn for_mode(thinking: bool) -> Self {
        let (temperature, top_p) = if thinking { (0.6, 0.95) } else { (0.7, 0.8) };
        SamplingParams {
            temperature,
            top_k: 20,
            top_p,
            min_p: 0.0,
            presence_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    /// The mode's settings with a model's generation_config.json defaults laid over them. Qwen3 ships
    /// its thinking-mode values there, so they apply to thinking only.
    pub fn for_model(thinking: bool, config: &crate::model::GenerationConfig) -> Self {
        let mut params = Self::for_mode(thinking);
        if thinking {
            params.temperature = config.temperature.unwrap_or(params.temperature);
            params.top_k = config.top_k.unwrap_or(params.top_k);
            params.top_p = config.top_p.unwrap_or(params.top_p);
            params.min_p = config.min_p.unwrap_or(params.min_p);
        }
        params
    }

    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Self::for_mode(false)
        }
    }

    /// Whether sampling is the largest logit as it comes (no temperature, no penalties): a decoder
    /// may then pick it itself (`Decoder::forward_argmax`).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repetition_penalty == 1.0 && self.presence_penalty == 0.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Sampler {
            params,
            rng: Rng::seeded(params.seed),
        }
    }

    /// Picks a token; `context` is the prompt (repetition penalty), `generated` the output so far.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], generated: &[u32]) -> u32 {
        let p = self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen: Vec<u32> = context.iter().chain(generated).copied().collect();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                let l = &mut logits[id as usize];
                *l = if *l > 0.0 {
                    *l / p.repetition_penalty
                } else {
                    *l * p.repetition_penalty
                };
            }
        }
        if p.presence_penalty != 0.0 {
            let mut seen = generated.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                logits[id as usize] -= p.presence_penalty;
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / p.temperature))
            .collect();
        let k = if p.top_k == 0 {
            candidates.len()
        } else {
            p.top_k.min(candidates.len())
        };
        if k < candidates.len() {
            candidates.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            candidates.truncate(k);
        }
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let max = candidates[0].1;
        let mut probs: Vec<f32> = candidates.iter().map(|c| (c.1 - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= total);
        let mut keep = probs.len();
        if p.top_p < 1.0 {
            let mut cumulative = 0.0;
            for (i, q) in probs.iter().enumerate() {
                cumulative += q;
                if cumulative >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            let floor = probs[0] * p.min_p;
            keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
        }
        let total: f32 = probs[..keep].iter().sum();
        let mut draw = self.rng.uniform() * total;
        for i in 0..keep {
            draw -= probs[i];
            if draw <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[keep - 1].0
    }
}

/// The index of the largest logit (the first on ties, as torch.argmax; NaNs never win). Greedy
/// decoding calls this once per token over the whole vocabulary (152k for Qwen3): a running-best loop
/// (a compare chained on the last winner) took 100-230 µs there, a tenth of a GPU decode step; per-lane
/// maxima the compiler vectorizes, then a scan for the first position holding the maximum, take ~10.
pub fn argmax(logits: &[f32]) -> u32 {
    const LANES: usize = 16;
    let chunks = logits.chunks_exact(LANES);
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for chunk in chunks.clone() {
        for (lane, &l) in lanes.iter_mut().zip(chunk) {
            *lane = if l > *lane { l } else { *lane };
        }
    }
    let max = (chunks.remainder().iter().chain(&lanes))
        .fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m });
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[], &[]), 1);
    }

    #[test]
    fn argmax_is_the_first_maximum_past_nans_and_lane_boundaries() {
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
        let mut logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 997) as f32 * 0.01)
            .collect();
        logits[37] = 50.0;
        logits[501] = 50.0;
        logits[3] = f32::NAN;
        assert_eq!(argmax(&logits), 37);
        logits[999] = 60.0; // in the tail past the last whole chunk of lanes
        assert_eq!(argmax(&logits[..999]), 37);
        assert_eq!(argmax(&logits), 999);
    }

    #[test]
    fn top_k_one_is_greedy_and_penalties_apply() {
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            ..SamplingParams::for_mode(true)
        });
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.9], &[], &[]), 1);
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            presence_penalty: 0.5,
            ..SamplingParams::for_mode(true)
        });
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.9], &[], &[1]), 2);
    }

    #[test]
    fn same_seed_same_samples() {
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                top_k: 0,
                top_p: 1.0,
                ..SamplingParams::for_mode(true)
            });
            (0..20)
                .map(|_| s.sample(&mut [0.0; 50], &[], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
