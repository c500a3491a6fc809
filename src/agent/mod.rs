//! The agent loop: ask the backend, run the tool calls it makes (concurrently), feed results and
//! mistakes back, until the model answers or `max_rounds` is reached — which is said, never silent.

use crate::backend::{Backend, BackendRequest, BackendResponse, ContextUse};
use crate::chat::{FinishReason, Message, ParseEvent, ToolCall};
use crate::config::GenerateSpec;
use crate::engine::SamplingParams;
use crate::tools::{CallRecord, ToolRegistry};
use anyhow::Result;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the loop reports while it runs (for the terminal and the transcript).
pub enum AgentEvent<'a> {
    Stream(&'a ParseEvent),
    ModelCall {
        round: usize,
        response: &'a BackendResponse,
    },
    ToolResult {
        round: usize,
        record: &'a CallRecord,
    },
    Notice(&'a str),
}

/// Token counts over the whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model answered without calling a tool.
    Answer,
    /// `max_rounds` model calls happened without a final answer.
    MaxRounds,
    /// The user interrupted generation (Ctrl-C).
    Interrupted,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub content: String,
    pub reasoning_content: Option<String>,
    pub messages: Vec<Message>,
    pub rounds: usize,
    pub usage: Usage,
    pub stop_reason: StopReason,
}

pub struct Agent {
    backend: Box<dyn Backend>,
    tools: ToolRegistry,
    generate: GenerateSpec,
    system: Option<String>,
    max_rounds: usize,
    interrupt: Arc<AtomicBool>,
}

/// Tokens per answer when the agent file does not say.
const DEFAULT_MAX_NEW_TOKENS: usize = 2048;

impl Agent {
    pub fn new(
        backend: Box<dyn Backend>,
        tools: ToolRegistry,
        generate: GenerateSpec,
        system: Option<String>,
        max_rounds: usize,
    ) -> Self {
        Agent {
            backend,
            tools,
            generate,
            system,
            max_rounds,
            interrupt: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that stops the current generation when set (e.g. from a Ctrl-C handler).
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Runs the conversation `input` (user messages, or a prior history) to a final answer.
    pub fn run(
        &mut self,
        input: Vec<Message>,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> Result<RunResult> {
        self.interrupt.store(false, Ordering::Relaxed);
        let mut messages = Vec::new();
        if let Some(system) = &self.system
            && !matches!(input.first(), Some(Message::System { .. }))
        {
            messages.push(Message::system(system.clone()));
        }
        messages.extend(input);
        let thinking = self.generate.thinking.unwrap_or(true);
        let mut usage = Usage::default();
        let max_new_tokens = self
            .generate
            .max_new_tokens
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS);
        for round in 1..=self.max_rounds {
            for note in self.tools.refresh() {
                eprintln!("note: {note}");
            }
            let schemas = self.tools.schemas();
            self.fit_context(&mut messages, &schemas, thinking, max_new_tokens, on_event)?;
            let request = BackendRequest {
                messages: &messages,
                tools: &schemas,
                thinking,
                sampling: self.sampling(thinking && soft_switch_allows_thinking(&messages)),
                max_new_tokens,
                stop: self.generate.stop.as_deref().unwrap_or_default(),
                interrupt: &self.interrupt,
            };
            let response = self
                .backend
                .complete(&request, &mut |event| on_event(AgentEvent::Stream(event)))?;
            on_event(AgentEvent::ModelCall {
                round,
                response: &response,
            });
            usage.prompt_tokens += response.prompt_tokens;
            usage.completion_tokens += response.completion_tokens;
            let output = &response.output;
            let calls: Vec<ToolCall> = output
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ToolCall::new(
                        format!("call_{round}_{}", i + 1),
                        c.name.clone(),
                        c.arguments.clone(),
                    )
                })
                .collect();
            messages.push(Message::Assistant {
                content: output.content.clone(),
                reasoning_content: output.reasoning_content.clone(),
                tool_calls: calls.clone(),
            });
            if self.interrupt.swap(false, Ordering::Relaxed) {
                on_event(AgentEvent::Notice(
                    "interrupted: generation stopped, no tool calls were run",
                ));
                return Ok(self.finish(messages, round, usage, StopReason::Interrupted));
            }
            if calls.is_empty() && output.errors.is_empty() {
                if response.finish_reason == FinishReason::Length {
                    on_event(AgentEvent::Notice(
                        "the answer was cut off by max_new_tokens",
                    ));
                }
                return Ok(self.finish(messages, round, usage, StopReason::Answer));
            }
            let requests: Vec<_> = calls
                .iter()
                .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
                .collect();
            for (record, call) in self.tools.dispatch(&requests).iter().zip(&calls) {
                on_event(AgentEvent::ToolResult { round, record });
                messages.push(Message::Tool {
                    content: record.output.text.clone(),
                    tool_call_id: Some(call.id.clone()),
                    name: Some(record.name.clone()),
                });
            }
            for error in &output.errors {
                messages.push(Message::Tool {
                    content: format!("Error: {error}"),
                    tool_call_id: None,
                    name: None,
                });
            }
        }
        let notice = format!(
            "stopped after {} model calls without a final answer (max_rounds); raise max_rounds in the agent \
             or task file to let it continue",
            self.max_rounds
        );
        on_event(AgentEvent::Notice(&notice));
        Ok(self.finish(messages, self.max_rounds, usage, StopReason::MaxRounds))
    }

    /// Keeps the prompt within `context − max_new_tokens`: first old tool results are cut to their head
    /// and tail (oldest first), then the oldest turns are dropped. Each step is announced.
    fn fit_context(
        &self,
        messages: &mut Vec<Message>,
        tools: &[serde_json::Value],
        thinking: bool,
        max_new_tokens: usize,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> Result<()> {
        let measure = |messages: &[Message]| -> Result<Option<ContextUse>> {
            self.backend.measure(&BackendRequest {
                messages,
                tools,
                thinking,
                sampling: SamplingParams::greedy(),
                max_new_tokens,
                stop: &[],
                interrupt: &self.interrupt,
            })
        };
        let fits = |u: &ContextUse| u.prompt_tokens + max_new_tokens <= u.context_length;
        let Some(mut usage) = measure(messages)? else {
            return Ok(());
        };
        if fits(&usage) {
            return Ok(());
        }
        for i in 0..messages.len() {
            if let Message::Tool { content, .. } = &mut messages[i]
                && let Some(cut) = cut_middle(content)
            {
                *content = cut;
                on_event(AgentEvent::Notice(
                    "context: an old tool result was cut to its head and tail to fit context_length",
                ));
                usage = measure(messages)?.expect("measured before");
                if fits(&usage) {
                    return Ok(());
                }
            }
        }
        loop {
            let first = messages
                .iter()
                .position(|m| !matches!(m, Message::System { .. }))
                .unwrap_or(messages.len());
            let last_user = messages
                .iter()
                .rposition(|m| matches!(m, Message::User { .. }));
            let next_turn = messages[first + 1..]
                .iter()
                .position(|m| matches!(m, Message::User { .. }))
                .map(|p| p + first + 1)
                .filter(|&p| Some(p) <= last_user);
            let Some(end) = next_turn else {
                anyhow::bail!(
                    "the prompt needs {} tokens but context_length {} leaves {} after max_new_tokens {}, even                      with earlier turns dropped: raise context_length or lower max_new_tokens",
                    usage.prompt_tokens,
                    usage.context_length,
                    usage.context_length.saturating_sub(max_new_tokens),
                    max_new_tokens
                );
            };
            messages.drain(first..end);
            on_event(AgentEvent::Notice(
                "context: the oldest turn was dropped to fit context_length",
            ));
            usage = measure(messages)?.expect("measured before");
            if fits(&usage) {
                return Ok(());
            }
        }
    }

    fn finish(
        &self,
        messages: Vec<Message>,
        rounds: usize,
        usage: Usage,
        stop_reason: StopReason,
    ) -> RunResult {
        let (content, reasoning_content) = match messages.last() {
            Some(Message::Assistant {
                content,
                reasoning_content,
                ..
            }) => (content.clone(), reasoning_content.clone()),
            _ => (String::new(), None),
        };
        RunResult {
            content,
            reasoning_content,
            messages,
            rounds,
            usage,
            stop_reason,
        }
    }

    /// Qwen3's recommended settings for the mode, overridden by what the agent sets.
    fn sampling(&self, thinking: bool) -> SamplingParams {
        let g = &self.generate;
        let base = self.backend.default_sampling(thinking);
        SamplingParams {
            temperature: g.temperature.unwrap_or(base.temperature),
            top_k: g.top_k.unwrap_or(base.top_k),
            top_p: g.top_p.unwrap_or(base.top_p),
            min_p: g.min_p.unwrap_or(base.min_p),
            presence_penalty: g.presence_penalty.unwrap_or(base.presence_penalty),
            repetition_penalty: g.repetition_penalty.unwrap_or(base.repetition_penalty),
            seed: g.seed.unwrap_or(base.seed),
        }
    }
}

/// Characters of a cut tool result kept from its start and its end.
const KEEP_HEAD: usize = 300;
const KEEP_TAIL: usize = 100;
/// Results shorter than what is kept plus this are left alone: cutting them would save little.
const MIN_CUT: usize = 100;

/// The text shortened to its head and tail with a marker saying how much was cut; None if already short.
fn cut_middle(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < KEEP_HEAD + KEEP_TAIL + MIN_CUT {
        return None;
    }
    let cut = chars.len() - KEEP_HEAD - KEEP_TAIL;
    let head: String = chars[..KEEP_HEAD].iter().collect();
    let tail: String = chars[chars.len() - KEEP_TAIL..].iter().collect();
    Some(format!(
        "{head}\n[… {cut} characters cut to fit the context …]\n{tail}"
    ))
}

/// The soft switch: the latest `/think` or `/no_think` in a user or system message decides (the model
/// honours it itself; the runtime picks the matching sampling settings).
fn soft_switch_allows_thinking(messages: &[Message]) -> bool {
    for message in messages.iter().rev() {
        let text = match message {
            Message::User { content } | Message::System { content } => content,
            _ => continue,
        };
        match (text.rfind("/think"), text.rfind("/no_think")) {
            (Some(t), Some(n)) => return t > n,
            (Some(_), None) => return true,
            (None, Some(_)) => return false,
            (None, None) => {}
        }
    }
    true
}
