//! Generation on the local model: prefix-reusing prefill, the decode loop (one token per pass, or drafts
//! verified several per pass: `speculation`), stopping, timings.

pub mod batch;
pub mod constraint;
pub mod sampler;
pub mod speculation;
pub mod speculation_bench;
pub mod stop;

use crate::chat::{FinishReason, Tokenizer};
use crate::model::decoder::TopKRequest;
use crate::model::{CpuDecoder, Decoder, Qwen3};
use anyhow::Result;
pub use constraint::{Constraint, GrammarError, Grammars};
pub use sampler::{Sampler, SamplingParams, TokenLogprobs};
use serde::Serialize;
pub use speculation::{PromptLookup, Speculation};
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
    /// Speculation (`Speculation::PromptLookup`): forward passes that verified a draft, the draft
    /// tokens they ran, and those the sampler confirmed (each one a decode step saved).
    pub verify_steps: usize,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

pub use crate::model::decoder::PREFILL_STEP;

/// Told how a prefill advances: `(computed, to_compute)` prompt tokens, first `(0, n)` and then
/// after each step of up to `Decoder::prefill_step` tokens, ending with `(n, n)`. Tokens reused from the
/// cache are not counted (`n` is what this call computes).
pub type PrefillProgress = Box<dyn FnMut(usize, usize) + Send>;

/// Told each emitted token's log-probabilities (`Engine::set_logprobs`), before the token is emitted.
pub type LogprobSink = Box<dyn FnMut(TokenLogprobs) + Send>;

/// The model plus a KV cache kept between calls: an agent re-sends a growing prompt every round, and
/// only the tokens after the longest common prefix with the previous call are computed again.
pub struct Engine {
    decoder: Box<dyn Decoder>,
    prefill_progress: Option<PrefillProgress>,
    speculation: Speculation,
    /// Where each emitted token's log-probabilities go, with how many of the best tokens to add.
    logprobs: Option<(usize, LogprobSink)>,
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
            speculation: Speculation::Off,
            logprobs: None,
        }
    }

    /// Whether later `generate` calls verify drafted tokens (`Speculation::default_for` gives the
    /// setting per device; the engine itself starts with `Off`).
    pub fn set_speculation(&mut self, speculation: Speculation) {
        self.speculation = speculation;
    }

    pub fn speculation(&self) -> Speculation {
        self.speculation
    }

    /// Reports every later prefill (in `prefill`, `generate` and `generate_text`) to `progress`; None
    /// stops reporting. The library only counts: drawing a bar is the caller's business.
    pub fn set_prefill_progress(&mut self, progress: Option<PrefillProgress>) {
        self.prefill_progress = progress;
    }

    /// Reports every later generation's emitted tokens to `sink` with their log-probabilities under
    /// the raw logits and the `top` most likely tokens' (`sampler::token_logprobs`), each before it
    /// is emitted; None stops. The full logits are then read on the host for every token (no pick
    /// where they are, no speculation): the ids stay what they would be, only slower on a GPU.
    pub fn set_logprobs(&mut self, logprobs: Option<(usize, LogprobSink)>) {
        self.logprobs = logprobs;
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
        self.decoder.prepare_for(prompt)?;
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
        let step_len = self.decoder.prefill_step();
        for (step, ids) in todo.chunks(step_len).enumerate() {
            logits = self.decoder.forward(ids, false)?;
            report(step * step_len + ids.len());
        }
        timings.reused_tokens = reuse;
        timings.prefill_tokens = prompt.len() - reuse;
        timings.prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        timings.prefill_tok_per_s = timings.prefill_tokens as f64 / start.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// Generates up to `max_new_tokens` after `prompt`. Stops on any of `stop_ids` (not included in the
    /// output) or when `on_token` breaks (the token it saw is included).
    ///
    /// With speculation on, drafted tokens are verified several per forward pass, and each position is
    /// still sampled as sequential decoding samples it (the penalties over the output so far, one draw
    /// from the seeded stream per token): the ids are sequential decoding's wherever the multi-token
    /// pass gives the same logits as one-token passes (the CPU engine's do, row for row).
    ///
    /// With a `constraint`, every token is drawn from the full logits it masked (never the decoder's
    /// own pick, which could not know the mask), one per pass: speculation is not used.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new_tokens: usize,
        params: SamplingParams,
        stop_ids: &[u32],
        constraint: Option<&mut Constraint>,
        on_token: impl FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let mut logprobs = self.logprobs.take();
        let recording = logprobs.as_mut().map(|(top, sink)| Recording {
            top: *top,
            sink,
            stop_ids,
        });
        let generation = self.generate_recording(
            prompt,
            max_new_tokens,
            params,
            stop_ids,
            constraint,
            recording,
            on_token,
        );
        self.logprobs = logprobs;
        self.decoder.generation_done();
        generation
    }

    /// `generate`, reporting each emitted token's log-probabilities to `recording` if given, without
    /// telling the decoder that it ended.
    #[allow(clippy::too_many_arguments)]
    fn generate_recording(
        &mut self,
        prompt: &[u32],
        max_new_tokens: usize,
        params: SamplingParams,
        stop_ids: &[u32],
        constraint: Option<&mut Constraint>,
        recording: Option<Recording>,
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
        let mut logits = self.prefill(prompt, &mut timings)?;
        let mut state = DecodeState {
            sampler: Sampler::new(params),
            prompt,
            fresh: true,
            constraint,
            recording,
        };
        let mut output = Output {
            ids: Vec::new(),
            stop_ids,
            max: max_new_tokens.min(room),
            on_token: &mut on_token,
            finish: FinishReason::Length,
        };
        let decode_start = Instant::now();
        if output.max > 0 {
            let first = state.sample(&mut logits, &[])?;
            match self.speculation {
                Speculation::PromptLookup
                    if state.constraint.is_none() && state.recording.is_none() =>
                {
                    self.decode_speculative(first, &mut state, &mut output, &mut timings)?
                }
                Speculation::Off | Speculation::PromptLookup => {
                    self.decode_sequential(first, &mut state, &mut output, &mut timings)?
                }
            }
        }
        let Output {
            ids: output,
            finish: finish_reason,
            ..
        } = output;
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

    /// One forward pass per token, from `next` (sampled, not yet run) on.
    fn decode_sequential(
        &mut self,
        mut next: u32,
        state: &mut DecodeState,
        output: &mut Output,
        timings: &mut Timings,
    ) -> Result<()> {
        while output.take(next).is_continue() {
            if let Some(constraint) = state.constraint.as_deref_mut() {
                constraint.commit(next)?;
            }
            next = self.step(next, state, &output.ids, timings)?;
        }
        Ok(())
    }

    /// From `next` on, drafts (`PromptLookup`) verified in one forward pass of `[next, drafts..]`: the
    /// token after each position is sampled from that row and emitted; while it equals the draft the
    /// next row stands, and the first that differs ends the pass (the rejected drafts' positions are
    /// dropped from the cache) and is the next token to run. A fully accepted draft adds the last
    /// row's token. Without a draft the step is sequential decoding's.
    fn decode_speculative(
        &mut self,
        mut next: u32,
        state: &mut DecodeState,
        output: &mut Output,
        timings: &mut Timings,
    ) -> Result<()> {
        debug_assert!(
            state.constraint.is_none() && state.recording.is_none(),
            "drafts are sampled unmasked and unrecorded: a constraint or logprobs decode sequentially"
        );
        let mut lookup = PromptLookup::default();
        'emit: while output.take(next).is_continue() {
            // Room for the drafts and the token after them: the pass never runs past `max` (which the
            // cache's capacity bounds), so neither the cache nor the output overflows.
            let limit = output.max - output.ids.len() - 1;
            let drafts = lookup.draft(state.prompt, &output.ids, limit);
            if drafts.is_empty() {
                next = self.step(next, state, &output.ids, timings)?;
                continue;
            }
            let cached = self.decoder.cached_tokens().len();
            let run: Vec<u32> = std::iter::once(next)
                .chain(drafts.iter().copied())
                .collect();
            let mut logits = self.decoder.forward(&run, true)?;
            // A decoder counting the output where its logits are has not seen this pass's tokens.
            state.fresh = true;
            timings.verify_steps += 1;
            timings.drafted_tokens += drafts.len();
            let vocab = logits.len() / run.len();
            let mut rows = logits.chunks_exact_mut(vocab);
            for (accepted, (&draft, row)) in drafts.iter().zip(&mut rows).enumerate() {
                let id = state.sampler.sample(row, state.prompt, &output.ids);
                if id != draft {
                    lookup.update(drafts.len(), accepted);
                    self.decoder.truncate_cache(cached + 1 + accepted);
                    next = id;
                    continue 'emit;
                }
                timings.accepted_tokens += 1;
                if output.take(id).is_break() {
                    return Ok(());
                }
            }
            lookup.update(drafts.len(), drafts.len());
            let last = rows.next().expect("the pass returns a row per token run");
            next = state.sampler.sample(last, state.prompt, &output.ids);
        }
        Ok(())
    }

    /// Runs `id` (the last of `generated`) and samples the token after it: picked by the decoder where
    /// its logits are when it can (`Decoder::forward_argmax`, or candidates from
    /// `Decoder::forward_top_k`) and no constraint masks them, else by the host from downloaded logits.
    fn step(
        &mut self,
        id: u32,
        state: &mut DecodeState,
        generated: &[u32],
        timings: &mut Timings,
    ) -> Result<u32> {
        let params = *state.sampler.params();
        let picked = if state.constraint.is_some() || state.recording.is_some() {
            None
        } else if params.is_greedy() {
            self.decoder.forward_argmax(id)?
        } else {
            let request = TopKRequest {
                k: state
                    .sampler
                    .candidate_count(self.decoder.config().vocab_size),
                repetition_penalty: params.repetition_penalty,
                presence_penalty: params.presence_penalty,
                prompt: state.prompt,
                generated,
                fresh: state.fresh,
            };
            let candidates = self.decoder.forward_top_k(id, &request)?;
            // A step the host sampled is not counted on the device: start afresh after one.
            state.fresh = candidates.is_none();
            candidates.map(|c| state.sampler.pick(&c))
        };
        match picked {
            Some(next) => {
                timings.device_picked_tokens += 1;
                Ok(next)
            }
            None => {
                let mut logits = self.decoder.forward(&[id], false)?;
                state.sample(&mut logits, generated)
            }
        }
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

/// Where `generate` reports log-probabilities: each sampled token that is not a stop id (so each
/// emitted one, in order) goes to `sink` with the `top` best tokens.
struct Recording<'r> {
    top: usize,
    sink: &'r mut LogprobSink,
    stop_ids: &'r [u32],
}

/// What sampling carries from token to token within one `generate` call.
struct DecodeState<'a, 'c> {
    sampler: Sampler,
    prompt: &'a [u32],
    /// The next `Decoder::forward_top_k` request starts the decoder's counted tokens afresh.
    fresh: bool,
    /// The grammar every emitted token must follow (it is committed to as each is emitted).
    constraint: Option<&'c mut Constraint>,
    /// Log-probabilities to report, computed from the logits before the constraint and the sampler
    /// change them.
    recording: Option<Recording<'c>>,
}

impl DecodeState<'_, '_> {
    /// Samples the token after `generated` from full logits, masked by the constraint if any.
    fn sample(&mut self, logits: &mut [f32], generated: &[u32]) -> Result<u32> {
        let raw = self.recording.as_ref().map(|_| logits.to_vec());
        if let Some(constraint) = self.constraint.as_deref_mut() {
            constraint.mask(logits)?;
        }
        let id = self.sampler.sample(logits, self.prompt, generated);
        if let (Some(raw), Some(recording)) = (raw, self.recording.as_mut())
            && !recording.stop_ids.contains(&id)
        {
            (recording.sink)(sampler::token_logprobs(&raw, id, recording.top));
        }
        Ok(id)
    }
}

/// The output of one `generate` call and the rules every sampled token passes, whichever loop
/// sampled it.
struct Output<'a> {
    ids: Vec<u32>,
    stop_ids: &'a [u32],
    /// Tokens wanted, within the cache's room.
    max: usize,
    on_token: &'a mut dyn FnMut(u32) -> ControlFlow<()>,
    finish: FinishReason,
}

impl Output<'_> {
    /// Takes a sampled token: a stop id ends generation without it; otherwise it is emitted, and
    /// generation ends when `on_token` breaks or the output is full.
    fn take(&mut self, id: u32) -> ControlFlow<()> {
        if self.stop_ids.contains(&id) {
            self.finish = FinishReason::Stop;
            return ControlFlow::Break(());
        }
        self.ids.push(id);
        if (self.on_token)(id).is_break() {
            self.finish = FinishReason::Stop;
            return ControlFlow::Break(());
        }
        if self.ids.len() == self.max {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod speculative_tests;
#[cfg(test)]
mod tests;
