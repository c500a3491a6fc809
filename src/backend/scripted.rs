//! A test backend: replays raw model outputs written in the agent file, through the real template and
//! the real streaming parser. Used to test agent definitions and the loop deterministically.

use super::{
    Backend, BackendRequest, BackendResponse, ContextUse, TextRequest, output_parser, render_prompt,
};
use crate::chat::{ChatTemplate, FinishReason, ParseEvent, ParsedOutput, Tokenizer};
use anyhow::{Result, bail};
use std::collections::VecDeque;

pub struct ScriptedBackend {
    template: ChatTemplate,
    script: VecDeque<String>,
    used: usize,
    /// With a tokenizer and a context length, prompts are measured like the local backend's.
    budget: Option<(Tokenizer, usize)>,
}

/// Characters per streamed chunk: small, so partial tags at chunk boundaries are exercised.
const CHUNK_CHARS: usize = 5;

impl ScriptedBackend {
    pub fn new(template: ChatTemplate, script: Vec<String>) -> Self {
        ScriptedBackend {
            template,
            script: script.into(),
            used: 0,
            budget: None,
        }
    }

    /// Measures prompts against `context_length`, so context trimming can be tested without a model.
    pub fn with_context(mut self, tokenizer: Tokenizer, context_length: usize) -> Self {
        self.budget = Some((tokenizer, context_length));
        self
    }

    /// The next scripted output, streamed to `on_text` in small pieces.
    fn next_output(&mut self, on_text: &mut dyn FnMut(&str)) -> Result<String> {
        let Some(raw) = self.script.pop_front() else {
            bail!(
                "the scripted backend has no output left for model call {} (its script has {} entries)",
                self.used + 1,
                self.used
            );
        };
        self.used += 1;
        let chars: Vec<char> = raw.chars().collect();
        for piece in chars.chunks(CHUNK_CHARS) {
            on_text(&piece.iter().collect::<String>());
        }
        Ok(raw)
    }

    fn measure_prompt(&self, text: &str) -> Result<Option<ContextUse>> {
        let Some((tokenizer, context_length)) = &self.budget else {
            return Ok(None);
        };
        Ok(Some(ContextUse {
            prompt_tokens: tokenizer.encode(text)?.len(),
            context_length: *context_length,
        }))
    }
}

impl Backend for ScriptedBackend {
    fn measure(&self, request: &BackendRequest) -> Result<Option<ContextUse>> {
        if self.budget.is_none() {
            return Ok(None);
        }
        self.measure_prompt(&render_prompt(&self.template, request)?)
    }

    fn measure_text(&self, prompt: &str) -> Result<Option<ContextUse>> {
        self.measure_prompt(prompt)
    }

    fn complete_text(
        &mut self,
        request: &TextRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<BackendResponse> {
        let raw = self.next_output(on_text)?;
        Ok(BackendResponse {
            output: ParsedOutput {
                content: raw.clone(),
                ..ParsedOutput::default()
            },
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
            prompt_text: Some(request.prompt.to_string()),
            raw_output: raw,
            timings: None,
        })
    }

    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        let prompt_text = render_prompt(&self.template, request)?;
        let mut parser = output_parser(request);
        let raw =
            self.next_output(&mut |piece| parser.feed(piece).iter().for_each(&mut *on_event))?;
        for event in parser.finish(FinishReason::Stop) {
            on_event(&event);
        }
        Ok(BackendResponse {
            output: parser.into_output(),
            finish_reason: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
            prompt_text: Some(prompt_text),
            raw_output: raw,
            timings: None,
        })
    }
}
