//! Measuring prompt-lookup speculation (`bench --speculation`): the same prompts decoded without and
//! with it in alternating rounds (a busy machine's noise then falls on both ways alike, and medians
//! are reported), and a verify pass's cost per draft length relative to one decode step.

use super::{Engine, SamplingParams, Speculation, Timings};
use anyhow::Result;
use serde::Serialize;
use std::ops::ControlFlow;
use std::time::Instant;

/// Plain against speculative decoding over a set of prompts.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub rounds: usize,
    pub prompts: usize,
    /// Tokens decoded per round, over all prompts (the same both ways where the ids agree).
    pub tokens: usize,
    /// Medians over rounds of tokens / decode time (prefill excluded).
    pub plain_tok_per_s: f64,
    pub speculative_tok_per_s: f64,
    /// speculative / plain.
    pub speedup: f64,
    /// Per round (they are the same every round under greedy decoding).
    pub verify_steps: usize,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    /// accepted / drafted.
    pub acceptance_rate: f64,
    /// Tokens a verify pass yields: its accepted drafts plus the token sampled after them.
    pub tokens_per_verify_step: f64,
    /// Whether both ways gave the same ids for every prompt in every round.
    pub same_ids: bool,
}

/// Decodes each of `prompts` (up to `gen_tokens`, ending at `stop_ids`) without and with speculation,
/// `rounds` times, alternating which way goes first. Leaves the engine's speculation as it was.
pub fn compare(
    engine: &mut Engine,
    prompts: &[Vec<u32>],
    gen_tokens: usize,
    sampling: SamplingParams,
    stop_ids: &[u32],
    rounds: usize,
) -> Result<Comparison> {
    let before = engine.speculation();
    let mut speeds = [Vec::new(), Vec::new()];
    let mut outputs: [Vec<Vec<u32>>; 2] = Default::default();
    let mut same_ids = true;
    let mut totals = Timings::default();
    for round in 0..rounds.max(1) {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for way in order {
            engine.set_speculation([Speculation::Off, Speculation::PromptLookup][way]);
            let (mut tokens, mut ms) = (0, 0.0);
            let mut ids = Vec::new();
            // The counts describe one speculative pass over the prompts (the last one run).
            let speculative = way == 1;
            if speculative {
                totals = Timings::default();
            }
            for prompt in prompts {
                let g = engine.generate(prompt, gen_tokens, sampling, stop_ids, None, |_| {
                    ControlFlow::Continue(())
                })?;
                tokens += g.token_ids.len();
                ms += g.timings.decode_ms;
                if speculative {
                    totals.verify_steps += g.timings.verify_steps;
                    totals.drafted_tokens += g.timings.drafted_tokens;
                    totals.accepted_tokens += g.timings.accepted_tokens;
                    totals.decode_tokens += g.token_ids.len();
                }
                ids.push(g.token_ids);
            }
            speeds[way].push(tokens as f64 / (ms / 1e3).max(1e-9));
            if !outputs[way].is_empty() && outputs[way] != ids {
                same_ids = false;
            }
            outputs[way] = ids;
        }
        same_ids &= outputs[0] == outputs[1];
    }
    engine.set_speculation(before);
    let plain = median(&mut speeds[0]);
    let speculative = median(&mut speeds[1]);
    let steps = totals.verify_steps.max(1) as f64;
    Ok(Comparison {
        rounds: rounds.max(1),
        prompts: prompts.len(),
        tokens: totals.decode_tokens,
        plain_tok_per_s: plain,
        speculative_tok_per_s: speculative,
        speedup: speculative / plain.max(1e-9),
        verify_steps: totals.verify_steps,
        drafted_tokens: totals.drafted_tokens,
        accepted_tokens: totals.accepted_tokens,
        acceptance_rate: totals.accepted_tokens as f64 / totals.drafted_tokens.max(1) as f64,
        tokens_per_verify_step: (totals.accepted_tokens + totals.verify_steps) as f64 / steps,
        same_ids,
    })
}

/// What verifying a draft of `draft_tokens` costs: one forward pass of `draft_tokens + 1` tokens
/// with every row's logits.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyCost {
    pub draft_tokens: usize,
    pub ms: f64,
    /// ms over one decode step's at the same depth.
    pub relative_to_decode: f64,
}

/// The verify pass's cost for drafts of 1 to `max_draft` tokens after `context` (prefilled here), and
/// one decode step's (ms), medians of `repeats` interleaved runs; every pass's positions are dropped
/// again, so each runs at the same depth.
pub fn verify_costs(
    engine: &mut Engine,
    context: &[u32],
    max_draft: usize,
    repeats: usize,
) -> Result<(f64, Vec<VerifyCost>)> {
    anyhow::ensure!(
        context.len() > max_draft,
        "the context ({} tokens) must be longer than the longest draft ({max_draft})",
        context.len()
    );
    anyhow::ensure!(
        context.len() + max_draft < engine.context_length(),
        "the context ({} tokens) and a draft of {max_draft} do not fit in {} positions",
        context.len(),
        engine.context_length()
    );
    engine.prefill(context, &mut Timings::default())?;
    let decoder = engine.decoder_mut();
    let depth = decoder.cached_tokens().len();
    let run = &context[..max_draft + 1];
    let mut timed = |ids: &[u32], all_logits: bool| -> Result<f64> {
        let start = Instant::now();
        decoder.forward(ids, all_logits)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        decoder.truncate_cache(depth);
        Ok(ms)
    };
    let mut decode = Vec::new();
    let mut verify = vec![Vec::new(); max_draft];
    for _ in 0..repeats.max(1) {
        decode.push(timed(&run[..1], false)?);
        for (k, times) in verify.iter_mut().enumerate() {
            times.push(timed(&run[..k + 2], true)?);
        }
    }
    let decode_ms = median(&mut decode);
    let costs = verify
        .iter_mut()
        .enumerate()
        .map(|(k, times)| {
            let ms = median(times);
            VerifyCost {
                draft_tokens: k + 1,
                ms,
                relative_to_decode: ms / decode_ms.max(1e-9),
            }
        })
        .collect();
    Ok((decode_ms, costs))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
