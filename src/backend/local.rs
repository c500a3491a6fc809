//! The built-in engine (CPU or GPU, `model.device`) as a backend: renders with the model's template, generates with KV-prefix
//! reuse across rounds, parses while streaming.

use super::{
    Backend, BackendRequest, BackendResponse, ContextUse, LogprobsRequest, TextRequest,
    TokenLogprob, output_parser, render_prompt,
};
use crate::chat::{ChatTemplate, ParseEvent, ParsedOutput, Tokenizer};
use crate::engine::{Constraint, Engine, Generation, Grammars, SamplingParams, TokenLogprobs};
use crate::model::GenerationConfig;
use anyhow::Result;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

pub struct LocalBackend {
    template: ChatTemplate,
    tokenizer: Tokenizer,
    engine: Engine,
    stop_ids: Vec<u32>,
    generation: GenerationConfig,
    /// The last prompt text `measure` tokenized and its ids: the call that follows it (a server
    /// measures, then completes) takes them instead of tokenizing the same text again.
    measured: RefCell<Option<(String, Vec<u32>)>>,
    /// The vocabulary compiled for constrained decoding, on the first request that needs it.
    grammars: Option<Grammars>,
    /// Every token's bytes by id, on the first request for logprobs.
    token_bytes: Option<Arc<Vec<Vec<u8>>>>,
}

impl LocalBackend {
    /// `generation` is the model's generation_config.json: its stop ids and sampling defaults.
    pub fn new(
        template: ChatTemplate,
        tokenizer: Tokenizer,
        engine: Engine,
        generation: GenerationConfig,
    ) -> Self {
        let mut stop_ids = generation.eos_token_ids.clone();
        stop_ids.extend(tokenizer.eos_token_id);
        stop_ids.sort_unstable();
        stop_ids.dedup();
        LocalBackend {
            template,
            tokenizer,
            engine,
            stop_ids,
            generation,
            measured: RefCell::new(None),
            grammars: None,
            token_bytes: None,
        }
    }

    /// Measures a prompt's text, keeping its ids for the call that follows.
    fn measure_prompt(&self, text: String) -> Result<Option<ContextUse>> {
        let ids = self.tokenizer.encode(&text)?;
        let used = ContextUse {
            prompt_tokens: ids.len(),
            context_length: self.engine.context_length(),
        };
        *self.measured.borrow_mut() = Some((text, ids));
        Ok(Some(used))
    }

    /// A prompt's ids: those `measure` kept for this very text, else tokenized now.
    fn prompt_ids(&self, text: &str) -> Result<Vec<u32>> {
        match self.measured.borrow_mut().take() {
            Some((measured, ids)) if measured == text => Ok(ids),
            _ => self.tokenizer.encode(text),
        }
    }

    /// The constraint for a request's answer format, if it has one.
    fn constraint(&mut self, request: &BackendRequest) -> Result<Option<Constraint>> {
        let Some(format) = request.format else {
            return Ok(None);
        };
        if self.grammars.is_none() {
            let vocab = self.engine.decoder().config().vocab_size;
            self.grammars = Some(Grammars::new(&self.tokenizer, vocab, &self.stop_ids)?);
        }
        let grammars = self.grammars.as_ref().expect("built above");
        grammars
            .constraint(&format.grammar(request.thinking))
            .map(Some)
    }

    /// Every token's bytes by id (ids past the tokenizer's vocabulary, the model's padding, have none).
    fn token_bytes(&mut self) -> Result<Arc<Vec<Vec<u8>>>> {
        if self.token_bytes.is_none() {
            let vocabulary = self.tokenizer.vocabulary()?;
            let bytes = vocabulary.into_iter().map(|(bytes, _)| bytes).collect();
            self.token_bytes = Some(Arc::new(bytes));
        }
        Ok(self.token_bytes.clone().expect("built above"))
    }

    /// Generates after `prompt`, passing text deltas to `on_text`, and with `logprobs` each token's
    /// log-probabilities to its sink just before the token's text.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        prompt: &[u32],
        max_new_tokens: usize,
        sampling: SamplingParams,
        stop: &[String],
        interrupt: &std::sync::atomic::AtomicBool,
        constraint: Option<&mut Constraint>,
        logprobs: Option<LogprobsRequest>,
        mut on_text: impl FnMut(&str),
    ) -> Result<(Generation, String)> {
        // The engine reports while it generates; its tokens wait here until the text callback,
        // which runs right after each one, passes them on.
        let reported: Arc<Mutex<Vec<TokenLogprobs>>> = Arc::default();
        let table = match logprobs {
            Some(request) => Some((request, self.token_bytes()?)),
            None => None,
        };
        if let Some((request, _)) = &table {
            let sink = reported.clone();
            self.engine.set_logprobs(Some((
                request.top,
                Box::new(move |token: TokenLogprobs| {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(token)
                }),
            )));
        }
        let generated = self.engine.generate_text(
            &self.tokenizer,
            prompt,
            max_new_tokens,
            sampling,
            &self.stop_ids,
            stop,
            Some(interrupt),
            constraint,
            |delta| {
                if let Some((request, bytes)) = &table {
                    let tokens =
                        std::mem::take(&mut *reported.lock().unwrap_or_else(|e| e.into_inner()));
                    for token in tokens {
                        (request.sink)(token_logprob(bytes, &token));
                    }
                }
                on_text(delta)
            },
        );
        self.engine.set_logprobs(None);
        generated
    }
}

/// The engine's ids as bytes.
fn token_logprob(bytes: &[Vec<u8>], token: &TokenLogprobs) -> TokenLogprob {
    let of = |id: u32| bytes.get(id as usize).cloned().unwrap_or_default();
    TokenLogprob {
        token: of(token.id),
        logprob: token.logprob,
        top: token.top.iter().map(|&(id, l)| (of(id), l)).collect(),
    }
}

impl Backend for LocalBackend {
    fn reports_logprobs(&self) -> bool {
        true
    }

    fn default_sampling(&self, thinking: bool) -> SamplingParams {
        SamplingParams::for_model(thinking, &self.generation)
    }

    fn measure(&self, request: &BackendRequest) -> Result<Option<ContextUse>> {
        self.measure_prompt(render_prompt(&self.template, request)?)
    }

    fn measure_text(&self, prompt: &str) -> Result<Option<ContextUse>> {
        self.measure_prompt(prompt.to_string())
    }

    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        let prompt_text = render_prompt(&self.template, request)?;
        let prompt = self.prompt_ids(&prompt_text)?;
        let mut constraint = self.constraint(request)?;
        let mut parser = output_parser(request);
        let (generation, raw) = self.run(
            &prompt,
            request.max_new_tokens,
            request.sampling,
            request.stop,
            request.interrupt,
            constraint.as_mut(),
            request.logprobs,
            |delta| parser.feed(delta).iter().for_each(&mut *on_event),
        )?;
        let finish_reason = generation.finish_reason;
        for event in parser.finish(finish_reason) {
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

    fn complete_text(
        &mut self,
        request: &TextRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<BackendResponse> {
        let prompt = self.prompt_ids(request.prompt)?;
        let (generation, text) = self.run(
            &prompt,
            request.max_new_tokens,
            request.sampling,
            request.stop,
            request.interrupt,
            None,
            request.logprobs,
            |delta| {
                if !delta.is_empty() {
                    on_text(delta)
                }
            },
        )?;
        Ok(BackendResponse {
            output: ParsedOutput {
                content: text.clone(),
                ..ParsedOutput::default()
            },
            finish_reason: generation.finish_reason,
            prompt_tokens: prompt.len(),
            completion_tokens: generation.token_ids.len(),
            prompt_text: Some(request.prompt.to_string()),
            raw_output: text,
            timings: Some(generation.timings),
        })
    }
}
