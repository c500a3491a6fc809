//! Where assistant turns come from. Every backend takes the same request (history, tools, settings) and
//! returns the same parsed output, so an agent definition moves between the local engine, a remote
//! OpenAI-compatible server and a scripted test run without changes.

mod deferred;
mod local;
mod openai;
mod scripted;

pub use deferred::Deferred;
pub use local::LocalBackend;
pub use openai::OpenAiBackend;
pub use scripted::ScriptedBackend;

use crate::chat::{
    AnswerFormat, ChatTemplate, FinishReason, Message, OutputParser, ParseEvent, ParsedOutput,
    RenderRequest,
};
use crate::engine::{SamplingParams, Timings};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value as Json;
use std::sync::atomic::AtomicBool;

/// One model call.
#[derive(Debug, Clone)]
pub struct BackendRequest<'a> {
    pub messages: &'a [Message],
    pub tools: &'a [Json],
    /// The hard switch: false renders the prompt with thinking disabled.
    pub thinking: bool,
    pub sampling: SamplingParams,
    pub max_new_tokens: usize,
    /// Texts that end the answer (not included).
    pub stop: &'a [String],
    /// Set from outside (Ctrl-C) to stop generating; what was generated so far is returned, and an
    /// unfinished tool call in it never runs.
    pub interrupt: &'a AtomicBool,
    /// What becomes of `<tool_call>` blocks in the output. Remote backends ignore it (the server they
    /// call decides).
    pub calls: CallParsing,
    /// A form the answer must take, enforced by constrained decoding (the local engine); the scripted
    /// backend replays its script regardless, and remote backends ignore it.
    pub format: Option<&'a AnswerFormat>,
    /// Each generated token's log-probabilities, where the backend reports them (`reports_logprobs`).
    pub logprobs: Option<LogprobsRequest<'a>>,
}

/// A request for each generated token's log-probability and the `top` most likely alternatives':
/// `sink` gets one `TokenLogprob` per output token, in order, each before the text it makes is
/// passed on (so a stream can carry them beside that text).
#[derive(Clone, Copy)]
pub struct LogprobsRequest<'a> {
    pub top: usize,
    pub sink: &'a dyn Fn(TokenLogprob),
}

impl std::fmt::Debug for LogprobsRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogprobsRequest {{ top: {} }}", self.top)
    }
}

/// One generated token's log-probability (the log-softmax of the model's raw logits, before
/// penalties, temperature or a grammar's mask: vLLM's default), with the best tokens' in order.
/// Tokens are their bytes: a byte-level token may hold part of a character.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(Vec<u8>, f32)>,
}

/// What becomes of `<tool_call>` blocks in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallParsing {
    /// Blocks are calls; one that is not a valid call is an error fed back to the model (the agent).
    Calls,
    /// Blocks are calls; one that is not a valid call stays in the content as the model wrote it (a
    /// server answering a request with tools: its client sees the text, not nothing).
    CallsElseText,
    /// Blocks stay text: a server answering a request without tools, whose client renders and parses
    /// tools itself (Qwen-Agent's default), as vLLM does without a tool parser.
    Text,
}

/// The streaming parser for a request's output, as its `thinking` and `calls` ask.
fn output_parser(request: &BackendRequest) -> OutputParser {
    let parser = OutputParser::new(request.thinking);
    match request.calls {
        CallParsing::Calls => parser,
        CallParsing::CallsElseText => parser.malformed_calls_as_text(),
        CallParsing::Text => parser.text_only_calls(),
    }
}

/// A raw prompt to continue (`/v1/completions`): no template, no parsing of the output.
#[derive(Debug, Clone)]
pub struct TextRequest<'a> {
    pub prompt: &'a str,
    pub sampling: SamplingParams,
    pub max_new_tokens: usize,
    /// Texts that end the answer (not included).
    pub stop: &'a [String],
    /// As `BackendRequest::interrupt`.
    pub interrupt: &'a AtomicBool,
    /// As `BackendRequest::logprobs`.
    pub logprobs: Option<LogprobsRequest<'a>>,
}

/// What a call produced.
#[derive(Debug, Clone, Serialize)]
pub struct BackendResponse {
    pub output: ParsedOutput,
    pub finish_reason: FinishReason,
    /// The exact prompt text, where the backend renders it (local, scripted).
    pub prompt_text: Option<String>,
    pub raw_output: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub timings: Option<Timings>,
}

/// A source of assistant turns. `on_event` receives reasoning, content and tool calls as they stream.
pub trait Backend {
    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse>;

    /// The prompt length in tokens and the context size, where the backend knows them (the agent then
    /// keeps prompts within `context − max_new_tokens`). Remote servers manage their own context.
    fn measure(&self, _request: &BackendRequest) -> Result<Option<ContextUse>> {
        Ok(None)
    }

    /// Continues a raw prompt: `on_text` receives the text as it comes, and the response's
    /// `output.content` is the whole text exactly as generated (no think split, no trimming, no
    /// calls). Only backends that own a tokenizer can.
    fn complete_text(
        &mut self,
        _request: &TextRequest,
        _on_text: &mut dyn FnMut(&str),
    ) -> Result<BackendResponse> {
        anyhow::bail!(
            "this backend continues conversations only: raw prompts need the local engine or the \
             scripted backend"
        )
    }

    /// A raw prompt's length in tokens and the context size, where the backend knows them.
    fn measure_text(&self, _prompt: &str) -> Result<Option<ContextUse>> {
        Ok(None)
    }

    /// Whether the backend honours `logprobs` in requests (the local engine); others ignore it.
    fn reports_logprobs(&self) -> bool {
        false
    }

    /// Sampling settings before the agent's own: the model's defaults where the backend knows them
    /// (remote servers apply theirs themselves), else Qwen3's recommended ones.
    fn default_sampling(&self, thinking: bool) -> SamplingParams {
        SamplingParams::for_mode(thinking)
    }
}

/// How much of the context a prompt takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextUse {
    pub prompt_tokens: usize,
    pub context_length: usize,
}

/// The prompt text for a request, rendered by the model's own template.
pub fn render_prompt(template: &ChatTemplate, request: &BackendRequest) -> Result<String> {
    let render = RenderRequest {
        messages: request.messages.iter().map(Message::to_json).collect(),
        tools: (!request.tools.is_empty()).then(|| request.tools.to_vec()),
        add_generation_prompt: true,
        enable_thinking: (!request.thinking).then_some(false),
        extra: Default::default(),
    };
    template.render(&render)
}
