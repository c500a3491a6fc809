//! The built-in CPU engine as a backend: renders with the model's template, generates with KV-prefix
//! reuse across rounds, parses while streaming.

use super::{render_prompt, Backend, BackendRequest, BackendResponse, ContextUse};
use crate::chat::{ChatTemplate, FinishReason, OutputParser, ParseEvent, Tokenizer};
use crate::engine::{Engine, StopStrings};
use anyhow::Result;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

pub struct LocalBackend {
    template: ChatTemplate,
    tokenizer: Tokenizer,
    engine: Engine,
    stop_ids: Vec<u32>,
}

impl LocalBackend {
    pub fn new(template: ChatTemplate, tokenizer: Tokenizer, engine: Engine, mut stop_ids: Vec<u32>) -> Self {
        stop_ids.extend(tokenizer.eos_token_id);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        LocalBackend { template, tokenizer, engine, stop_ids }
    }
}

impl Backend for LocalBackend {
    fn measure(&self, request: &BackendRequest) -> Result<Option<ContextUse>> {
        let prompt = self.tokenizer.encode(&render_prompt(&self.template, request)?)?;
        Ok(Some(ContextUse { prompt_tokens: prompt.len(), context_length: self.engine.context_length() }))
    }

    fn complete(&mut self, request: &BackendRequest, on_event: &mut dyn FnMut(&ParseEvent)) -> Result<BackendResponse> {
        let prompt_text = render_prompt(&self.template, request)?;
        let prompt = self.tokenizer.encode(&prompt_text)?;
        let mut decoder = self.tokenizer.incremental_decoder();
        let mut parser = OutputParser::new(request.thinking);
        let mut stops = StopStrings::new(request.stop.to_vec());
        let mut raw = String::new();
        let mut failure = None;
        let generation = self.engine.generate(&prompt, request.max_new_tokens, request.sampling, &self.stop_ids, |id| {
            if request.interrupt.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            match decoder.push(id) {
                Ok(delta) => {
                    let (delta, stopped) = stops.push(&delta);
                    for event in parser.feed(&delta) {
                        on_event(&event);
                    }
                    raw.push_str(&delta);
                    if stopped { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
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
        raw.push_str(&tail);
        let finish_reason = match request.interrupt.load(Ordering::Relaxed) {
            true => FinishReason::Length,
            false => generation.finish_reason,
        };
        for event in parser.feed(&tail).into_iter().chain(parser.finish(finish_reason)) {
            on_event(&event);
        }
        Ok(BackendResponse {
            output: parser.into_output(),
            finish_reason,
            prompt_tokens: prompt.len(),
            completion_tokens: generation.token_ids.len(),
            prompt_text: Some(prompt_text),
            raw_output: raw,
            timings: Some(generation.timings),
        })
    }
}
