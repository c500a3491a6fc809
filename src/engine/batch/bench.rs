//! What `bench --batch N` measures: N sequences started together on one `Batcher`, each with its own
//! prompt, decoding `gen_tokens` after it; aggregate and per-sequence speeds, as llama.cpp's
//! `llama-batched-bench` reports them.

use super::Batcher;
use crate::engine::{Engine, SamplingParams};
use anyhow::Result;
use serde::Serialize;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// One batch size's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRun {
    pub sequences: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// All prompt tokens over the time until the last prompt was read (prompts share passes with
    /// sequences already decoding).
    pub prefill_tok_per_s: f64,
    /// All decoded tokens over the time from the first decoded token to the last.
    pub decode_tok_per_s: f64,
    /// The mean of each sequence's own decode speed.
    pub per_sequence_decode_tok_per_s: f64,
    pub wall_s: f64,
    /// Forward passes the executor ran, and the most sequences one of them held.
    pub passes: u64,
    pub max_sequences: usize,
    pub token_ids: Vec<Vec<u32>>,
}

/// One sequence of a run: when its decoding began and ended, its own decode speed, its ids.
struct SequenceRun {
    decode_start: Instant,
    end: Instant,
    decode_tok_per_s: f64,
    token_ids: Vec<u32>,
}

/// Runs every prompt on its own thread and engine, all released at once, and measures the batch.
pub fn measure(
    batcher: &Arc<Batcher>,
    prompts: &[Vec<u32>],
    gen_tokens: usize,
    sampling: SamplingParams,
) -> Result<BatchRun> {
    let passes_before = batcher.stats().passes.load(Ordering::Relaxed);
    batcher.stats().max_sequences.store(0, Ordering::Relaxed);
    let start = Barrier::new(prompts.len());
    let began = Instant::now();
    let results: Vec<Result<SequenceRun>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .map(|prompt| {
                let start = &start;
                scope.spawn(move || {
                    let mut engine = Engine::from_decoder(Box::new(batcher.sequence()));
                    start.wait();
                    let generation =
                        engine.generate(prompt, gen_tokens, sampling, &[], None, |_| {
                            ControlFlow::Continue(())
                        })?;
                    let end = Instant::now();
                    let t = &generation.timings;
                    let decode_start = end - std::time::Duration::from_secs_f64(t.decode_ms / 1e3);
                    Ok(SequenceRun {
                        decode_start,
                        end,
                        decode_tok_per_s: t.decode_tok_per_s,
                        token_ids: generation.token_ids,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread panicked"))
            .collect()
    });
    let results = results.into_iter().collect::<Result<Vec<_>>>()?;
    let wall_s = began.elapsed().as_secs_f64();
    let first_decode = results
        .iter()
        .map(|r| r.decode_start)
        .min()
        .unwrap_or(began);
    let last_prefill = results
        .iter()
        .map(|r| r.decode_start)
        .max()
        .unwrap_or(began);
    let last_end = results.iter().map(|r| r.end).max().unwrap_or(began);
    // As `Timings::decode_tok_per_s`: the first token of each comes from its prefill's logits.
    let decoded: usize = results
        .iter()
        .map(|r| r.token_ids.len().saturating_sub(1))
        .sum();
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let stats = batcher.stats();
    Ok(BatchRun {
        sequences: prompts.len(),
        prompt_tokens,
        gen_tokens,
        prefill_tok_per_s: prompt_tokens as f64
            / last_prefill.duration_since(began).as_secs_f64().max(1e-9),
        decode_tok_per_s: decoded as f64
            / last_end
                .duration_since(first_decode)
                .as_secs_f64()
                .max(1e-9),
        per_sequence_decode_tok_per_s: results.iter().map(|r| r.decode_tok_per_s).sum::<f64>()
            / results.len().max(1) as f64,
        wall_s,
        passes: stats.passes.load(Ordering::Relaxed) - passes_before,
        max_sequences: stats.max_sequences.load(Ordering::Relaxed),
        token_ids: results.into_iter().map(|r| r.token_ids).collect(),
    })
}
