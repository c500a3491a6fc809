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

/// Draws tokens with one parameter set and one seeded stream: the host path (`sample`, over the whole
/// vocabulary) and the device path (`pick`, over candidates a decoder selected where the logits are)
/// share the stream and every step after the candidates, so both give the same ids for the same logits.
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

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// How many candidates `pick` needs out of a vocabulary of `vocab`: 1 when greedy, else top_k
    /// (the whole vocabulary when top_k is 0).
    pub fn candidate_count(&self, vocab: usize) -> usize {
        match (self.params.temperature <= 0.0, self.params.top_k) {
            (true, _) => 1,
            (false, 0) => vocab,
            (false, k) => k.min(vocab),
        }
    }

    /// Picks a token; `context` is the prompt (repetition penalty), `generated` the output so far.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], generated: &[u32]) -> u32 {
        let p = self.params;
        let seen = |ids: &[u32]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        if p.repetition_penalty != 1.0 {
            let all: Vec<u32> = context.iter().chain(generated).copied().collect();
            for id in seen(&all) {
                let l = &mut logits[id as usize];
                *l = repetition_penalized(*l, p.repetition_penalty);
            }
        }
        if p.presence_penalty != 0.0 {
            for id in seen(generated) {
                logits[id as usize] -= p.presence_penalty;
            }
        }
        if p.temperature <= 0.0 {
            return argmax(logits);
        }
        let candidates = top_candidates(logits, self.candidate_count(logits.len()));
        self.pick(&candidates)
    }

    /// Picks a token from the penalized logits' best candidates, in `candidate_order` (the first
    /// `candidate_count` of them, fewer only where the rest are NaN): temperature, top-p, min-p, then a
    /// draw from the stream. Greedy takes the first; no candidates (every logit NaN) gives id 0, as
    /// `argmax` does.
    pub fn pick(&mut self, candidates: &[(u32, f32)]) -> u32 {
        let p = self.params;
        let Some(&(best, _)) = candidates.first() else {
            return 0;
        };
        if p.temperature <= 0.0 {
            return best;
        }
        let scaled: Vec<f32> = candidates.iter().map(|c| c.1 / p.temperature).collect();
        let max = scaled[0];
        let mut probs: Vec<f32> = scaled.iter().map(|s| (s - max).exp()).collect();
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

/// HF's repetition penalty of one logit: positive logits divided, negative ones multiplied.
/// sample_top_k_blocks in src/model/cuda/kernels.cu computes the same (an IEEE division there too).
pub fn repetition_penalized(logit: f32, penalty: f32) -> f32 {
    if logit > 0.0 {
        logit / penalty
    } else {
        logit * penalty
    }
}

/// The order candidates come in: larger logit first (a total order, +0 above -0), the lower id first
/// on equal logits. The CUDA kernels' keys (logit_key in src/model/cuda/kernels.cu) sort the same way,
/// so the device's candidates are the host's.
pub fn candidate_order(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` best (id, logit) pairs in `candidate_order`; NaNs are never candidates.
pub fn top_candidates(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_nan())
        .map(|(i, &l)| (i as u32, l))
        .collect();
    if k == 0 {
        return Vec::new();
    }
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, candidate_order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(candidate_order);
    candidates
}

/// A token's log-probability under a set of logits, with the `top` most likely tokens' (OpenAI's
/// `logprobs` / `top_logprobs`). The server reports the model's raw logits this way, before penalties,
/// temperature or a grammar's mask change them (vLLM's default, `raw_logprobs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprobs {
    pub id: u32,
    pub logprob: f32,
    /// The `top` best (id, logprob) pairs, in `candidate_order`.
    pub top: Vec<(u32, f32)>,
}

/// The log-softmax of `logits` at `id`, and the `top` best tokens with theirs. NaN logits count as
/// impossible (-inf); the sum runs in f64, so a 152k-token vocabulary loses no precision to it.
pub fn token_logprobs(logits: &[f32], id: u32, top: usize) -> TokenLogprobs {
    let max = logits
        .iter()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let sum: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| (l as f64 - max as f64).exp())
        .sum();
    let norm = max as f64 + sum.ln();
    let logprob = |l: f32| {
        if l.is_nan() || !norm.is_finite() {
            f32::NEG_INFINITY
        } else {
            (l as f64 - norm) as f32
        }
    };
    TokenLogprobs {
        id,
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |&l| logprob(l)),
        top: top_candidates(logits, top)
            .into_iter()
            .map(|(id, l)| (id, logprob(l)))
            .collect(),
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
pub(crate) mod tests {
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
    fn candidates_are_the_best_logits_in_one_order() {
        let logits = [1.0, f32::NAN, 3.0, -0.0, 3.0, 0.0, f32::NEG_INFINITY, 2.0];
        let ids = |k| {
            top_candidates(&logits, k)
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>()
        };
        // Equal logits: the lower id first; +0 above -0; NaN never.
        assert_eq!(ids(3), [2, 4, 7]);
        assert_eq!(ids(100), [2, 4, 7, 0, 5, 3, 6]);
        assert_eq!(ids(0), Vec::<u32>::new());
        assert!(top_candidates(&[f32::NAN; 4], 2).is_empty());
        assert_eq!(Sampler::new(SamplingParams::for_mode(true)).pick(&[]), 0);
    }

    #[test]
    fn candidate_counts_follow_temperature_and_top_k() {
        let count = |temperature, top_k| {
            Sampler::new(SamplingParams {
                temperature,
                top_k,
                ..SamplingParams::for_mode(true)
            })
            .candidate_count(100)
        };
        assert_eq!(count(0.0, 20), 1);
        assert_eq!(count(0.6, 20), 20);
        assert_eq!(count(0.6, 0), 100);
        assert_eq!(count(0.6, 500), 100);
    }

    /// What a device does (decoders that implement `Decoder::forward_top_k`): penalties from per-token
    /// marks (bit 0: prompt or output, bit 1: output), then the first `k` of a full sort.
    pub(crate) fn device_candidates(
        logits: &[f32],
        marks: &[u8],
        (repetition, presence): (f32, f32),
        k: usize,
    ) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = logits
            .iter()
            .zip(marks)
            .enumerate()
            .map(|(i, (&l, &m))| {
                let l = if m & 1 != 0 {
                    repetition_penalized(l, repetition)
                } else {
                    l
                };
                (i as u32, if m & 2 != 0 { l - presence } else { l })
            })
            .filter(|c| !c.1.is_nan())
            .collect();
        all.sort_by(candidate_order);
        all.truncate(k);
        all
    }

    #[test]
    fn picking_from_device_candidates_gives_the_host_ids() {
        let vocab = 300;
        let base = SamplingParams::for_mode(true);
        let settings = [
            base,
            SamplingParams {
                presence_penalty: 1.5,
                ..base
            },
            SamplingParams {
                repetition_penalty: 1.3,
                min_p: 0.05,
                top_k: 64,
                ..base
            },
            SamplingParams {
                temperature: 0.0,
                repetition_penalty: 1.2,
                ..base
            },
            SamplingParams {
                top_k: 0,
                top_p: 0.8,
                temperature: 1.0,
                ..base
            },
            SamplingParams { top_k: 1, ..base },
        ];
        let mut rng = Rng::seeded(3);
        for (n, &params) in settings.iter().enumerate() {
            let params = SamplingParams {
                seed: n as u64,
                ..params
            };
            let (mut host, mut device) = (Sampler::new(params), Sampler::new(params));
            let prompt: Vec<u32> = (0..40)
                .map(|_| (rng.next_u64() % vocab as u64) as u32)
                .collect();
            let mut marks = vec![0u8; vocab];
            prompt.iter().for_each(|&id| marks[id as usize] |= 1);
            let mut generated = Vec::new();
            for _ in 0..60 {
                // Coarse logits, so equal values (and the tie rule) come up often.
                let logits: Vec<f32> = (0..vocab)
                    .map(|_| (rng.normal() * 4.0).round() / 2.0)
                    .collect();
                let k = device.candidate_count(vocab);
                let penalties = (params.repetition_penalty, params.presence_penalty);
                let candidates = device_candidates(&logits, &marks, penalties, k);
                let id = host.sample(&mut logits.clone(), &prompt, &generated);
                assert_eq!(
                    device.pick(&candidates),
                    id,
                    "settings {n}, step {}",
                    generated.len()
                );
                generated.push(id);
                marks[id as usize] |= 3;
            }
        }
    }

    #[test]
    fn draws_follow_the_truncated_softmax() {
        // Temperature 0.5 doubles the logits: probabilities ∝ e^4, e^2, 1, e^-2, e^-4.
        let candidates: Vec<(u32, f32)> = (0..5).map(|i| (10 + i, 2.0 - i as f32)).collect();
        let weights: Vec<f64> = (0..5).map(|i| (4.0 - 2.0 * i as f64).exp()).collect();
        let frequencies = |params: SamplingParams, draws| {
            let mut s = Sampler::new(params);
            let mut counts = [0usize; 5];
            for _ in 0..draws {
                counts[(s.pick(&candidates) - 10) as usize] += 1;
            }
            counts.map(|c| c as f64 / draws as f64)
        };
        let params = SamplingParams {
            temperature: 0.5,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplingParams::for_mode(true)
        };
        let total: f64 = weights.iter().sum();
        for (f, w) in frequencies(params, 40_000).iter().zip(&weights) {
            assert!((f - w / total).abs() < 0.01, "{f} vs {}", w / total);
        }
        // top-p 0.95 keeps the first two (cumulative 0.865, then 0.982); min-p 0.2 only the best (the
        // second has e^-2 = 0.135 of its probability).
        let kept: f64 = weights[..2].iter().sum();
        let f = frequencies(
            SamplingParams {
                top_p: 0.95,
                ..params
            },
            20_000,
        );
        assert_eq!(f[2..], [0.0; 3]);
        assert!((f[0] - weights[0] / kept).abs() < 0.01, "{f:?}");
        let f = frequencies(
            SamplingParams {
                min_p: 0.2,
                ..params
            },
            1000,
        );
        assert_eq!(f, [1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn logprobs_are_the_log_softmax_with_the_best_tokens_in_order() {
        // Probabilities 1/8, 1/2, 1/8, 1/4 (logits 10 + ln p: the shift cancels), and a NaN.
        let ln2 = std::f32::consts::LN_2;
        let logits = [
            10.0 - 3.0 * ln2,
            10.0 - ln2,
            10.0 - 3.0 * ln2,
            10.0 - 2.0 * ln2,
            f32::NAN,
        ];
        let found = token_logprobs(&logits, 3, 3);
        assert_eq!(found.id, 3);
        assert!((found.logprob - (0.25f32).ln()).abs() < 1e-6, "{found:?}");
        let ids: Vec<u32> = found.top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 0]);
        assert!((found.top[0].1 - (0.5f32).ln()).abs() < 1e-6, "{found:?}");
        assert_eq!(
            found.top[1].1, found.logprob,
            "the same math for the token and its rank"
        );
        let total: f32 = logits[..4]
            .iter()
            .map(|&l| token_logprobs(&logits, 0, 0).logprob - logits[0] + l)
            .map(f32::exp)
            .sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert_eq!(token_logprobs(&logits, 4, 0).logprob, f32::NEG_INFINITY);
        assert!(token_logprobs(&logits, 0, 0).top.is_empty());
        // A large vocabulary of equal logits: each exactly -ln(n), no drift in the sum.
        let flat = vec![3.5f32; 151_936];
        let expected = -(151_936f64.ln()) as f32;
        assert!((token_logprobs(&flat, 7, 1).logprob - expected).abs() < 1e-6);
        let dead = [f32::NEG_INFINITY; 3];
        assert_eq!(token_logprobs(&dead, 1, 1).logprob, f32::NEG_INFINITY);
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
