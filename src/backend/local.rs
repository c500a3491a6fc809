//! The built-in engine (CPU or GPU, `model.device`) as a backend: renders with the model's template, generates with KV-prefix
//! reuse across rounds, parses while streaming.

use super::{Backend, BackendRequest, BackendResponse, ContextUse, output_parser, render_prompt};
use crate::chat::{ChatTemplate, ParseEvent, Tokenizer};
use crate::engine::{Engine, SamplingParams};
use crate::model::GenerationConfig;
use anyhow::Result;

pub struct LocalBackend {
    template: ChatTemplate,
    tokenizer: Tokenizer,
    engine: Engine,
    stop_ids: Vec<u32>,
    generation: GenerationConfig,
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
        }
    }
}

impl Backend for LocalBackend {
    fn default_sampling(&self, thinking: bool) -> SamplingParams {
        SamplingParams::for_model(thinking, &self.generation)
    }

    fn measure(&self, request: &BackendRequest) -> Result<Option<ContextUse>> {
        let prompt = self
            .tokenizer
            .encode(&render_prompt(&self.template, request)?)?;
        Ok(Some(ContextUse {
            prompt_tokens: prompt.len(),
            context_length: self.engine.context_length(),
        }))
    }

    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        let prompt_text = render_prompt(&self.template, request)?;
        let prompt = self.tokenizer.encode(&prompt_text)?;
        let mut parser = output_parser(request);
        let (generation, raw) = self.engine.generate_text(
            &self.tokenizer,
            &prompt,
            request.max_new_tokens,
            request.sampling,
            &self.stop_ids,
            request.stop,
            Some(request.interrupt),
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
}
