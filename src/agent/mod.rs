//! The agent loop: ask the backend, run the tool calls it makes (concurrently), feed results and
//! mistakes back, until the model answers or `max_rounds` is reached — which is said, never silent.
//! The loop knows nothing about terminals or files: everything it has to say (its own notes and those
//! the tools queue) leaves as an `AgentEvent`.

pub mod assemble;
pub mod backend_pool;
mod context;
pub mod transcript;

use crate::backend::{Backend, BackendRequest, BackendResponse, CallParsing};
use crate::chat::{AnswerFormat, FinishReason, Message, ParseEvent, ToolCall};
use crate::config::GenerateSpec;
use crate::engine::SamplingParams;
use crate::tools::mcp::McpToolSource;
use crate::tools::sampling::{SampleAsk, Sampled};
use crate::tools::{CallRecord, Cancel, ToolOutput, ToolRegistry};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

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
    /// Something the user should know (a cut context, a stopped run, a tool's own notice).
    Notice(&'a str),
    /// A tool's request for a completion (an MCP server's sampling) answered by the model while its
    /// call ran: what was asked, and the model's response or why there is none.
    Sampling {
        ask: &'a SampleAsk,
        outcome: Result<&'a BackendResponse, &'a str>,
    },
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
    /// The interrupt flag was set (Ctrl-C, a signal, a caller's cancel).
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

/// A run that failed part-way (the backend failed, the prompt cannot fit the context). It carries the
/// conversation up to the failure, so a caller keeps it (`chat` lets the user retry; `eval` scores the
/// case as failed) instead of losing the history with the error.
#[derive(Debug)]
pub struct RunError {
    pub error: anyhow::Error,
    /// The input (with the system prompt) and every finished round before the failure.
    pub messages: Vec<Message>,
    /// Model calls that completed before the failure.
    pub rounds: usize,
    pub usage: Usage,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for RunError {}

pub struct Agent {
    backend: Box<dyn Backend>,
    tools: ToolRegistry,
    generate: GenerateSpec,
    system: Option<String>,
    max_rounds: usize,
    interrupt: Arc<AtomicBool>,
    /// The MCP servers among the tools, for what they offer besides tools (prompts).
    mcp: Option<Arc<McpToolSource>>,
}

/// Tokens per answer when the agent file does not say.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 2048;

/// How often the loop looks at the tools' notices and the interrupt flag while calls run.
const DISPATCH_POLL: Duration = Duration::from_millis(100);

/// How long interrupted calls get to stop and say so (an MCP call: to send `notifications/cancelled`)
/// before they are abandoned.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// The conversation and counters of a run in progress (kept when it fails).
struct Progress {
    messages: Vec<Message>,
    rounds: usize,
    usage: Usage,
}

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
            mcp: None,
        }
    }

    /// Names the MCP servers whose tools are among the agent's, so their prompts can be used.
    pub fn with_mcp_servers(mut self, servers: Arc<McpToolSource>) -> Self {
        self.mcp = Some(servers);
        self
    }

    /// Ends the agent (its tools stopped, its MCP servers with them) and gives its backend back, model
    /// still loaded, for the next agent: `run` builds every run a fresh agent (fresh tool state, as
    /// if run alone) on one backend of its pool.
    pub fn into_backend(self) -> Box<dyn Backend> {
        self.backend
    }

    /// Calls one tool as a run calls it, outside any run (`qwen3-agent tools AGENT --call`): the
    /// tools' notices are reported and MCP servers' sampling requests answered by this agent's model
    /// while the call runs.
    pub fn call_tool(
        &mut self,
        name: &str,
        arguments: Map<String, Json>,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> anyhow::Result<CallRecord> {
        let (mut records, _) = self.dispatch(vec![(name.to_string(), arguments)], on_event)?;
        self.report_notices(on_event);
        records
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the registry returned no record for the call"))
    }

    /// The MCP servers' prompts (see `McpToolSource::prompts`); none without servers.
    pub fn prompts(&self) -> Vec<Json> {
        self.mcp
            .as_ref()
            .map(|servers| servers.prompts())
            .unwrap_or_default()
    }

    /// The messages of an MCP server's prompt, to start a conversation from (see
    /// `McpToolSource::prompt_messages`).
    pub fn prompt_messages(
        &self,
        server: Option<&str>,
        name: &str,
        arguments: &Map<String, Json>,
    ) -> anyhow::Result<Vec<Message>> {
        match &self.mcp {
            Some(servers) => servers.prompt_messages(server, name, arguments),
            None => anyhow::bail!("the agent has no MCP servers, so it has no prompts"),
        }
    }

    /// A flag that stops the run at its next safe point when set (from a Ctrl-C or signal handler, or a
    /// server cancelling a request): generation stops, calls still running are cancelled (MCP servers
    /// are told) or, after a grace, abandoned (their results read "interrupted"), and the run returns `StopReason::Interrupted`. Set while no run is going, it
    /// stops the next run before its first model call. The run that honours it clears it.
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Runs the conversation `input` (user messages, or a prior history) to a final answer.
    pub fn run(
        &mut self,
        input: Vec<Message>,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> Result<RunResult, RunError> {
        let mut progress = Progress {
            messages: Vec::new(),
            rounds: 0,
            usage: Usage::default(),
        };
        if let Some(system) = &self.system
            && !matches!(input.first(), Some(Message::System { .. }))
        {
            progress.messages.push(Message::system(system.clone()));
        }
        progress.messages.extend(input);
        match self.run_rounds(&mut progress, on_event) {
            Ok(stop_reason) => Ok(finish(progress, stop_reason)),
            Err(error) => Err(RunError {
                error,
                messages: progress.messages,
                rounds: progress.rounds,
                usage: progress.usage,
            }),
        }
    }

    fn run_rounds(
        &mut self,
        progress: &mut Progress,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> anyhow::Result<StopReason> {
        if self.max_rounds == 0 {
            anyhow::bail!(
                "max_rounds is 0, so the agent may not call the model even once: set max_rounds to at least 1"
            );
        }
        let thinking = self.generate.thinking.unwrap_or(true);
        let max_new_tokens = self
            .generate
            .max_new_tokens
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS);
        for round in 1..=self.max_rounds {
            if self.interrupt.swap(false, Ordering::Relaxed) {
                on_event(AgentEvent::Notice(
                    "interrupted: stopped before the next model call",
                ));
                return Ok(StopReason::Interrupted);
            }
            for note in self.tools.refresh() {
                on_event(AgentEvent::Notice(&note));
            }
            self.report_notices(on_event);
            let schemas = self.tools.schemas();
            let messages = &mut progress.messages;
            self.fit_context(messages, &schemas, thinking, max_new_tokens, on_event)?;
            // `constrain_tool_calls`: any call the model opens is a valid call of one of the tools.
            let constrained = (self.generate.constrain_tool_calls == Some(true)
                && !schemas.is_empty())
            .then(|| AnswerFormat::ToolCalls {
                tools: schemas.clone(),
                parallel: true,
                optional: true,
            });
            let request = BackendRequest {
                messages,
                tools: &schemas,
                thinking,
                sampling: self.sampling(thinking && soft_switch_allows_thinking(messages)),
                max_new_tokens,
                stop: self.generate.stop.as_deref().unwrap_or_default(),
                interrupt: &self.interrupt,
                calls: CallParsing::Calls,
                format: constrained.as_ref(),
                logprobs: None,
            };
            let response = self
                .backend
                .complete(&request, &mut |event| on_event(AgentEvent::Stream(event)))?;
            progress.rounds = round;
            on_event(AgentEvent::ModelCall {
                round,
                response: &response,
            });
            progress.usage.prompt_tokens += response.prompt_tokens;
            progress.usage.completion_tokens += response.completion_tokens;
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
                // Every call gets a result, so the history stays valid for servers that check.
                for call in &calls {
                    messages.push(Message::Tool {
                        content: format!(
                            "Error: {} was not run: the user interrupted.",
                            call.function.name
                        ),
                        tool_call_id: Some(call.id.clone()),
                        name: Some(call.function.name.clone()),
                    });
                }
                on_event(AgentEvent::Notice(
                    "interrupted: generation stopped, no tool calls were run",
                ));
                return Ok(StopReason::Interrupted);
            }
            if calls.is_empty() && output.errors.is_empty() {
                if response.finish_reason == FinishReason::Length {
                    on_event(AgentEvent::Notice(
                        "the answer was cut off by max_new_tokens",
                    ));
                }
                return Ok(StopReason::Answer);
            }
            let requests: Vec<_> = calls
                .iter()
                .map(|c| (c.function.name.clone(), c.function.arguments.clone()))
                .collect();
            let (records, interrupted) = self.dispatch(requests, on_event)?;
            for (record, call) in records.iter().zip(&calls) {
                on_event(AgentEvent::ToolResult { round, record });
                messages.push(Message::Tool {
                    content: record.output.text.clone(),
                    tool_call_id: Some(call.id.clone()),
                    name: Some(record.name.clone()),
                });
            }
            if let Some(notice) = interrupted {
                on_event(AgentEvent::Notice(notice));
                return Ok(StopReason::Interrupted);
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
        Ok(StopReason::MaxRounds)
    }

    /// Runs the calls on a thread of their own while this one reports the tools' notices as they come
    /// and watches the interrupt flag. When it is set the calls are cancelled (MCP servers are told
    /// with `notifications/cancelled`) and get `CANCEL_GRACE` to say so; calls that still run then are
    /// abandoned (each gets an "interrupted" error result, so the history stays well formed). The
    /// second value, when the run was interrupted, is the notice that says how the calls ended.
    fn dispatch(
        &mut self,
        requests: Vec<(String, Map<String, Json>)>,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> anyhow::Result<(Vec<CallRecord>, Option<&'static str>)> {
        let start = Instant::now();
        let (sender, receiver) = mpsc::channel();
        let tools = self.tools.clone();
        let cancel = Cancel::default();
        let names: Vec<String> = requests.iter().map(|(name, _)| name.clone()).collect();
        let arguments: Vec<Map<String, Json>> = requests.iter().map(|(_, a)| a.clone()).collect();
        let watched = cancel.clone();
        std::thread::Builder::new()
            .name("tool-dispatch".into())
            .spawn(move || {
                let _ = sender.send(tools.dispatch_cancellable(&requests, &watched));
            })?;
        loop {
            let received = receiver.recv_timeout(DISPATCH_POLL);
            self.report_notices(on_event);
            self.answer_samples(on_event);
            match received {
                Ok(records) => return Ok((records, None)),
                Err(RecvTimeoutError::Timeout) if self.interrupt.swap(false, Ordering::Relaxed) => {
                    cancel.cancel();
                    while let Some(request) = self.tools.samples().take() {
                        request.answer(Err("the user interrupted the run".into()));
                    }
                    let told = receiver.recv_timeout(CANCEL_GRACE);
                    self.report_notices(on_event);
                    if let Ok(records) = told {
                        return Ok((records, Some("interrupted: the tool calls were cancelled")));
                    }
                    let duration_ms = start.elapsed().as_secs_f64() * 1e3;
                    let records = names
                        .into_iter()
                        .zip(arguments)
                        .map(|(name, arguments)| CallRecord {
                            output: ToolOutput::error(format!(
                                "Error: {name} was interrupted by the user before it answered."
                            )),
                            name,
                            arguments,
                            duration_ms,
                        })
                        .collect();
                    let notice = "interrupted: the tool calls still running were abandoned";
                    return Ok((records, Some(notice)));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the tool dispatch thread ended without results")
                }
            }
        }
    }

    /// Answers the tools' requests for a completion (MCP sampling) with the agent's own backend: the
    /// request's system prompt and messages, no tools, thinking off (a server wants the answer within
    /// its token budget), the agent's non-thinking sampling with the request's temperature, its stop
    /// texts, and the interrupt flag watched. Each is reported as an `AgentEvent::Sampling`.
    fn answer_samples(&mut self, on_event: &mut dyn FnMut(AgentEvent)) {
        while let Some(request) = self.tools.samples().take() {
            let ask = &request.ask;
            let mut messages: Vec<Message> =
                ask.system.iter().cloned().map(Message::system).collect();
            messages.extend(ask.messages.iter().cloned());
            let mut sampling = self.sampling(false);
            if let Some(temperature) = ask.temperature {
                sampling.temperature = temperature;
            }
            let completion = BackendRequest {
                messages: &messages,
                tools: &[],
                thinking: false,
                sampling,
                max_new_tokens: ask.max_tokens,
                stop: &ask.stop,
                interrupt: &self.interrupt,
                calls: CallParsing::Text,
                format: None,
                logprobs: None,
            };
            let answer = match self.backend.complete(&completion, &mut |_| {}) {
                // A cut-short answer is not the server's completion: tell it why there is none.
                Ok(_) if self.interrupt.load(Ordering::Relaxed) => {
                    let error = "interrupted by the user before the model finished".to_string();
                    on_event(AgentEvent::Sampling {
                        ask,
                        outcome: Err(&error),
                    });
                    Err(error)
                }
                Ok(response) => {
                    on_event(AgentEvent::Sampling {
                        ask,
                        outcome: Ok(&response),
                    });
                    Ok(Sampled {
                        text: response.output.content.clone(),
                        cut: response.finish_reason == FinishReason::Length,
                    })
                }
                Err(e) => {
                    let error = format!("the agent's model failed: {e:#}");
                    on_event(AgentEvent::Sampling {
                        ask,
                        outcome: Err(&error),
                    });
                    Err(error)
                }
            };
            request.answer(answer);
        }
    }

    /// Emits every notice the tools queued since the last look.
    fn report_notices(&self, on_event: &mut dyn FnMut(AgentEvent)) {
        for notice in self.tools.notices().drain() {
            on_event(AgentEvent::Notice(&notice));
        }
    }

    /// Qwen3's recommended settings for the mode, overridden by what the agent sets.
    fn sampling(&self, thinking: bool) -> SamplingParams {
        self.generate
            .sampling(self.backend.default_sampling(thinking))
    }
}

/// The result of a run that ended with `stop_reason`: the last assistant turn is the answer.
fn finish(progress: Progress, stop_reason: StopReason) -> RunResult {
    let (content, reasoning_content) = match progress.messages.last() {
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
        messages: progress.messages,
        rounds: progress.rounds,
        usage: progress.usage,
        stop_reason,
    }
}

/// The soft switch: the latest `/think` or `/no_think` in a user or system message decides (the model
/// honours it itself; the runtime picks the matching sampling settings).
pub fn soft_switch_allows_thinking(messages: &[Message]) -> bool {
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
