//! Generation on the local model: prefix-reusing prefill, the decode loop, stopping, timings.

pub mod constraint;
pub mod sampler;
pub mod stop;

use crate::chat::{FinishReason, Tokenizer};
use crate::model::decoder::TopKRequest;
use crate::model::{CpuDecoder, Decoder, Qwen3};
use anyhow::Result;
pub use constraint::{Constraint, GrammarError, Grammars};
pub use sampler::{Sampler, SamplingParams};
use serde::Serialize;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
pub use stop::StopStrings;

/// What happened in one `generate` call.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub token_ids: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub timings: Timings,
}

/// Where the time went; `reused_tokens` are prompt tokens whose KV came from the previous call.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub reused_tokens: usize,
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    pub decode_tokens: usize,
    /// Decoded tokens the decoder picked where the logits are (`Decoder::forward_argmax`, or candidates
    /// from `Decoder::forward_top_k`) rather than the host from downloaded logits.
    pub device_picked_tokens: usize,
    pub decode_ms: f64,
    pub prefill_tok_per_s: f64,
    pub decode_tok_per_s: f64,
}

/// Prompt tokens one prefill step computes: a long prompt runs in steps of this many so that its
/// progress can be reported between them. Each step still fills the CPU's row blocks and the GPU's
/// batch (the CUDA engine's prefill chunks hold at most 512 tokens anyway).
pub const PREFILL_STEP: usize = 512;

/// Told how a prefill advances: `(computed, to_compute)` prompt tokens, first `(0, n)` and then
/// after each step of up to `PREFILL_STEP` tokens, ending with `(n, n)`. Tokens reused from the
/// cache are not counted (`n` is what this call computes).
pub type PrefillProgress = Box<dyn FnMut(usize, usize) + Send>;

/// The model plus a KV cache kept between calls: an agent re-sends a growing prompt every round, and
/// only the tokens after the longest common prefix with the previous call are computed again.
pub struct Engine {
    decoder: Box<dyn Decoder>,
    prefill_progress: Option<PrefillProgress>,
}

impl Engine {
    /// The CPU model with a cache of `context_length` positions.
    pub fn new(model: Qwen3, context_length: usize) -> Self {
        Self::from_decoder(Box::new(CpuDecoder::new(model, context_length)))
    }

    /// A model on any device (see `model::load_decoder`).
    pub fn from_decoder(decoder: Box<dyn Decoder>) -> Self {
        Engine {
            decoder,
            prefill_progress: None,
        }
    }

    /// Reports every later prefill (in `prefill`, `generate` and `generate_text`) to `progress`; None
    /// stops reporting. The library only counts: drawing a bar is the caller's business.
    pub fn set_prefill_progress(&mut self, progress: Option<PrefillProgress>) {
        self.prefill_progress = progress;
    }

    pub fn decoder(&self) -> &dyn Decoder {
        self.decoder.as_ref()
    }

    pub fn decoder_mut(&mut self) -> &mut dyn Decoder {
        self.decoder.as_mut()
    }

    /// Forgets every cached position (benchmarks measure prefill from nothing).
    pub fn clear_cache(&mut self) {
        self.decoder.truncate_cache(0);
    }

    pub fn context_length(&self) -> usize {
        self.decoder.capacity()
    }

    /// Brings the cache to `prompt` and returns the logits after its last token.
    pub fn prefill(&mut self, prompt: &[u32], timings: &mut Timings) -> Result<Vec<f32>> {
        anyhow::ensure!(!prompt.is_empty(), "the prompt is empty");
        let common = self
            .decoder
            .cached_tokens()
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // The last prompt token is always recomputed: its logits are not cached.
        let reuse = common.min(prompt.len() - 1);
        self.decoder.truncate_cache(reuse);
        let start = Instant::now();
        let todo = &prompt[reuse..];
        let mut report = |done| {
            if let Some(progress) = &mut self.prefill_progress {
                progress(done, todo.len());
            }
        };
        report(0);
        let mut logits = Vec::new();
        for (step, ids) in todo.chunks(PREFILL_STEP).enumerate() {
            logits = self.decoder.forward(ids, false)?;
            report(step * PREFILL_STEP + ids.len());
        }
        timings.reused_tokens = reuse;
        timings.prefill_tokens = prompt.len() - reuse;
        timings.prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        timings.prefill_tok_per_s = timings.prefill_tokens as f64 / start.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// Generates up to `max_new_tokens` after `prompt`. Stops on any of `stop_ids` (not included in the
    /// output) or when `on_token` breaks (the token it saw is included). With a `constraint`, every
    /// token is drawn from the full logits it masked (never the decoder's own pick, which could not
    /// know the mask).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new_tokens: usize,
        params: SamplingParams,
        stop_ids: &[u32],
        mut constraint: Option<&mut Constraint>,
        mut on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut timings = Timings::default();
        let room = self.decoder.capacity().saturating_sub(prompt.len());
        anyhow::ensure!(
            room > 0,
            "the prompt ({} tokens) fills the whole context ({}): shorten it or raise context_length",
            prompt.len(),
            self.decoder.capacity()
        );
        let max_new_tokens = max_new_tokens.min(room);
        let mut logits = self.prefill(prompt, &mut timings)?;
        let mut sampler = Sampler::new(params);
        let mut output = Vec::new();
        let mut finish_reason = FinishReason::Length;
        // The next id when the decoder picked it itself (greedy, `Decoder::forward_argmax`) or
        // selected its candidates (`Decoder::forward_top_k`).
        let mut picked = None;
        let mut fresh = true;
        let decode_start = Instant::now();
        while output.len() < max_new_tokens {
            let id = match picked.take() {
                Some(id) => id,
                None => {
                    if let Some(constraint) = constraint.as_deref_mut() {
                        constraint.mask(&mut logits)?;
                    }
                    sampler.sample(&mut logits, prompt, &output)
                }
            };
            if stop_ids.contains(&id) {
                finish_reason = FinishReason::Stop;
                break;
            }
            if let Some(constraint) = constraint.as_deref_mut() {
                constraint.commit(id)?;
            }
            output.push(id);
            if on_token(id).is_break() {
                finish_reason = FinishReason::Stop;
                break;
            }
            if output.len() == max_new_tokens {
                break;
            }
            picked = if constraint.is_some() {
                None
            } else if params.is_greedy() {
                self.decoder.forward_argmax(id)?
            } else {
                let request = TopKRequest {
                    k: sampler.candidate_count(self.decoder.config().vocab_size),
                    repetition_penalty: params.repetition_penalty,
                    presence_penalty: params.presence_penalty,
                    prompt,
                    generated: &output,
                    fresh,
                };
                let candidates = self.decoder.forward_top_k(id, &request)?;
                // A step the host sampled is not counted on the device: start afresh after one.
                fresh = candidates.is_none();
                candidates.map(|c| sampler.pick(&c))
            };
            match picked {
                Some(_) => timings.device_picked_tokens += 1,
                None => logits = self.decoder.forward(&[id], false)?,
            }
        }
        timings.decode_tokens = output.len();
        timings.decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
        timings.decode_tok_per_s =
            output.len().saturating_sub(1) as f64 / decode_start.elapsed().as_secs_f64().max(1e-9);
        Ok(Generation {
            token_ids: output,
            finish_reason,
            prompt_tokens: prompt.len(),
            timings,
        })
    }

    /// `generate` plus detokenization: `on_text` receives text as it becomes final — never half a
    /// character, nothing of or after a stop string. Setting `interrupt` stops early; the result then
    /// counts as truncated (`Length`), so an unfinished tool call in it never runs.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_text(
        &mut self,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        max_new_tokens: usize,
        params: SamplingParams,
        stop_ids: &[u32],
        stop_strings: &[String],
        interrupt: Option<&AtomicBool>,
        constraint: Option<&mut Constraint>,
        mut on_text: impl FnMut(&str),
    ) -> Result<(Generation, String)> {
        let mut decoder = tokenizer.incremental_decoder();
        let mut stops = StopStrings::new(stop_strings.to_vec());
        let mut text = String::new();
        let mut failure = None;
        let interrupted = || interrupt.is_some_and(|flag| flag.load(Ordering::Relaxed));
        let mut generation =
            self.generate(prompt, max_new_tokens, params, stop_ids, constraint, |id| {
                if interrupted() {
                    return ControlFlow::Break(());
                }
                match decoder.push(id) {
                    Ok(delta) => {
                        let (delta, stopped) = stops.push(&delta);
                        on_text(&delta);
                        text.push_str(&delta);
                        if stopped {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let (tail, _) = stops.push(&decoder.finish()?);
        let tail = tail + &stops.finish();
        on_text(&tail);
        text.push_str(&tail);
        if interrupted() {
            generation.finish_reason = FinishReason::Length;
        }
        Ok((generation, text))
    }
}

#[cfg(test)]
mod tests;
