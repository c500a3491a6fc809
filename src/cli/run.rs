//! `run`: execute a task file, streaming thinking, answer and tool activity; optional JSON result and
//! JSON-lines transcript.

use super::model_cmds::load_decoder;
use anyhow::{Context, Result, bail};
use clap::Args;
use qwen3_agent::agent::{Agent, AgentEvent, RunResult};
use qwen3_agent::backend::{Backend, LocalBackend, OpenAiBackend, ScriptedBackend};
use qwen3_agent::chat::{ChatTemplate, ParseEvent, Tokenizer};
use qwen3_agent::config::McpServerSpec;
use qwen3_agent::config::{self, BackendKind, Expect, ResolvedAgent};
use qwen3_agent::engine::Engine;
use qwen3_agent::model::{GenerationConfig, LoadOptions};
use qwen3_agent::tools::ToolRegistry;
use qwen3_agent::tools::mcp::{self, McpSettings, McpToolSource};
use qwen3_agent::tools::python::CodeInterpreter;
use qwen3_agent::tools::python::runtime::Runtime;
use qwen3_agent::tools::python::sandbox::SessionOptions;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Run a task (an agent plus its input) to a final answer.
#[derive(Args)]
pub struct RunArgs {
    /// The task file (YAML).
    task: PathBuf,
    /// Render prompts with thinking disabled (wins over the agent file and /think).
    #[arg(long)]
    no_thinking: bool,
    /// Print only the final result as JSON: {"content", "reasoning_content", "messages", "rounds", "usage"}.
    #[arg(long)]
    json: bool,
    /// Append one JSON line per event to this file, flushed as it goes.
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Print only the final answer.
    #[arg(long)]
    quiet: bool,
}

/// How much longer the registry waits than a tool's own timeout, so MCP calls are cancelled by the MCP
/// layer (which tells the server) before the registry gives up on them.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Largest message read from an MCP server. Past rmcp's 16 MiB default so that a 20 MB result arrives
/// and is cut with a note, instead of failing the call.
const MAX_MCP_MESSAGE_BYTES: usize = 64 << 20;

pub fn run(args: RunArgs) -> Result<()> {
    let task = config::load_task(&args.task)?;
    let mut agent_def = task.agent.clone();
    if args.no_thinking {
        agent_def.agent.generate.thinking = Some(false);
    }
    let mut transcript = args
        .transcript
        .as_deref()
        .map(Transcript::open)
        .transpose()?;
    if let Some(t) = transcript.as_mut() {
        let mut shown = serde_json::to_value(&agent_def)?;
        if shown["agent"]["model"]["api_key"].is_string() {
            shown["agent"]["model"]["api_key"] = "<redacted>".into();
        }
        t.write(json!({"event": "run_start", "task": task.source, "agent": shown}))?;
    }
    let mut agent = build_agent(&agent_def)?;
    let mut printer = Printer::new(!args.json && !args.quiet);
    let mut transcript_error = None;
    let result = agent.run(task.messages.clone(), &mut |event| {
        printer.show(&event);
        if let Some(t) = transcript.as_mut()
            && let Err(e) = t.record(&event)
        {
            transcript_error.get_or_insert(e);
        }
    })?;
    if let Some(e) = transcript_error {
        return Err(e.context("writing the transcript"));
    }
    if let Some(t) = transcript.as_mut() {
        t.write(
            json!({"event": "run_end", "rounds": result.rounds, "stop_reason": result.stop_reason,
            "usage": result.usage, "content": result.content}),
        )?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(
                &json!({"content": result.content, "reasoning_content": result.reasoning_content,
                "messages": result.messages, "rounds": result.rounds, "usage": result.usage,
                "stop_reason": result.stop_reason})
            )?
        );
    } else if args.quiet {
        println!("{}", result.content);
    } else {
        printer.end();
    }
    if let Some(expect) = &task.expect {
        check_expectations(expect, &result)?;
    }
    Ok(())
}

/// List every tool of an agent (or MCP config) exactly as it is rendered into the prompt, or call one.
#[derive(Args)]
pub struct ToolsArgs {
    /// The agent file (YAML).
    #[arg(required_unless_present = "mcp_config", conflicts_with = "mcp_config")]
    agent: Option<PathBuf>,
    /// An MCP config file (Claude Desktop's mcpServers or VS Code's servers format) instead of an agent.
    #[arg(long)]
    mcp_config: Option<PathBuf>,
    /// Call this tool and print {"is_error", "text", "files"}.
    #[arg(long)]
    call: Option<String>,
    /// The call's arguments as a JSON object.
    #[arg(long, default_value = "{}", requires = "call")]
    args: String,
    /// Seconds before a call is abandoned.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

pub fn tools(args: ToolsArgs) -> Result<()> {
    let registry = match (&args.agent, &args.mcp_config) {
        (Some(agent), _) => build_tools(&config::load_agent(agent)?)?,
        (None, Some(path)) => {
            let timeout = Duration::from_secs_f64(args.timeout);
            let mut registry = ToolRegistry::new(timeout + CANCEL_GRACE);
            let servers = config::load_mcp_config(path)?;
            if let Some(source) = start_mcp(&servers, timeout, registry.notices())? {
                registry.add_source(source)?;
            }
            registry
        }
        (None, None) => unreachable!("clap requires one"),
    };
    match &args.call {
        None => {
            let listed: Vec<serde_json::Value> = registry
                .schemas()
                .into_iter()
                .map(|schema| schema["function"].clone())
                .collect();
            println!("{}", serde_json::to_string_pretty(&listed)?);
        }
        Some(name) => {
            let arguments: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&args.args).context("--args must be a JSON object")?;
            let record = registry.dispatch(&[(name.clone(), arguments)]).remove(0);
            println!(
                "{}",
                serde_json::to_string(
                    &json!({"is_error": record.output.is_error, "text": record.output.text,
                    "files": record.output.files})
                )?
            );
        }
    }
    Ok(())
}

/// The agent a definition describes: its backend, tools and settings.
pub(super) fn build_agent(definition: &ResolvedAgent) -> Result<Agent> {
    let a = &definition.agent;
    let backend = build_backend(definition)?;
    let tools = build_tools(definition)?;
    Ok(Agent::new(
        backend,
        tools,
        a.generate.clone(),
        a.system.clone(),
        a.max_rounds,
    ))
}

fn build_backend(agent: &ResolvedAgent) -> Result<Box<dyn Backend>> {
    let spec = &agent.agent.model;
    match spec.backend {
        BackendKind::Scripted => {
            let dir = spec.path.as_deref().expect("validated at load");
            let backend =
                ScriptedBackend::new(ChatTemplate::from_model_dir(dir)?, spec.script.clone());
            Ok(Box::new(match spec.context_length {
                Some(n) => backend.with_context(Tokenizer::from_model_dir(dir)?, n),
                None => backend,
            }))
        }
        BackendKind::Local => {
            let dir = &qwen3_agent::model::hub::resolve_model_dir(
                spec.path.as_deref().expect("validated at load"),
            )
            .with_context(|| format!("{}: model.path", agent.source.display()))?;
            let template = ChatTemplate::from_model_dir(dir)?;
            let tokenizer = Tokenizer::from_model_dir(dir)?;
            let options = LoadOptions {
                device: spec.device,
                precision: spec.precision.unwrap_or_default(),
                rope_scaling: spec.rope_scaling.clone(),
                context_length: spec.context_length,
            };
            let (decoder, _) = load_decoder(dir, &options)?;
            let generation = GenerationConfig::load(dir)?;
            Ok(Box::new(LocalBackend::new(
                template,
                tokenizer,
                Engine::from_decoder(decoder),
                generation,
            )))
        }
        BackendKind::Openai => {
            let api_key = match (&spec.api_key, &spec.api_key_env) {
                (Some(key), _) => Some(key.clone()),
                (None, Some(var)) => Some(std::env::var(var).with_context(|| {
                    format!(
                        "{}: model.api_key_env names {var}, which is not set",
                        agent.source.display()
                    )
                })?),
                (None, None) => None,
            };
            let lookup = |name: &str| std::env::var(name).ok();
            let base_url =
                config::expand_env(spec.base_url.as_deref().expect("validated at load"), lookup)
                    .with_context(|| format!("{}: model.base_url", agent.source.display()))?;
            let model = spec.model.clone().expect("validated at load");
            Ok(Box::new(OpenAiBackend::new(&base_url, api_key, model)?))
        }
    }
}

pub(super) fn build_tools(agent: &ResolvedAgent) -> Result<ToolRegistry> {
    let a = &agent.agent;
    let timeout = Duration::from_secs_f64(a.timeout);
    let code_timeout = a.tools.code_interpreter.as_ref().map_or(0.0, |c| c.timeout);
    let mut registry =
        ToolRegistry::new(timeout.max(Duration::from_secs_f64(code_timeout)) + CANCEL_GRACE);
    if let Some(spec) = &a.tools.code_interpreter {
        let runtime = Runtime::open(spec.runtime_dir.as_deref())
            .with_context(|| format!("{}: tools.code_interpreter", agent.source.display()))?;
        let options = SessionOptions::from_spec(spec, output_dir()?);
        registry.register(Arc::new(CodeInterpreter::new(runtime, options)))?;
    }
    let servers = config::mcp_servers(agent)?;
    if let Some(source) = start_mcp(&servers, timeout, registry.notices())? {
        registry.add_source(source)?;
    }
    Ok(registry)
}

/// Where tools put the files (images, figures) they reference in their results.
fn output_dir() -> Result<PathBuf> {
    Ok(std::env::current_dir()?.join("qwen3-agent-output"))
}

/// Starts MCP servers with a progress line; a server that fails is reported and left out.
fn start_mcp(
    servers: &BTreeMap<String, McpServerSpec>,
    call_timeout: Duration,
    notices: qwen3_agent::tools::Notices,
) -> Result<Option<Arc<McpToolSource>>> {
    if servers.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = servers.keys().map(String::as_str).collect();
    eprintln!("starting MCP servers: {}", names.join(", "));
    let settings = McpSettings {
        connect_timeout: Duration::from_secs(30),
        call_timeout,
        max_output_chars: 20_000,
        max_message_bytes: MAX_MCP_MESSAGE_BYTES,
        output_dir: output_dir()?,
        notices,
        forward_stderr: std::env::var_os("QWEN3_AGENT_MCP_STDERR").is_some(),
    };
    let started = mcp::start_servers(servers, &settings)?;
    for failure in started.failures {
        eprintln!("note: {failure}; continuing without it");
    }
    Ok(Some(started.source))
}

fn check_expectations(expect: &Expect, result: &RunResult) -> Result<()> {
    let called: Vec<&str> = result
        .messages
        .iter()
        .filter_map(|m| match m {
            qwen3_agent::chat::Message::Tool { name: Some(n), .. } => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let mut failures = Vec::new();
    for needle in &expect.contains {
        if !result.content.contains(needle.as_str()) {
            failures.push(format!("the answer does not contain {needle:?}"));
        }
    }
    for tool in &expect.tools_called {
        if !called.contains(&tool.as_str()) {
            failures.push(format!("{tool} was never called"));
        }
    }
    if let Some(max) = expect.max_rounds
        && result.rounds > max
    {
        failures.push(format!(
            "took {} rounds, expected at most {max}",
            result.rounds
        ));
    }
    if !failures.is_empty() {
        bail!("expectations failed: {}", failures.join("; "));
    }
    Ok(())
}

/// Streams events to the terminal: thinking dimmed, tool activity coloured (plain when piped).
pub(super) struct Printer {
    enabled: bool,
    color: bool,
    in_reasoning: bool,
}

/// Tool results longer than this are shortened on screen (the model and transcript get them whole).
const DISPLAY_CHARS: usize = 600;

impl Printer {
    pub(super) fn new(enabled: bool) -> Self {
        Printer {
            enabled,
            color: std::io::stdout().is_terminal(),
            in_reasoning: false,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub(super) fn show(&mut self, event: &AgentEvent) {
        if !self.enabled {
            if let AgentEvent::Notice(text) = event {
                eprintln!("note: {text}");
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = match event {
            AgentEvent::Stream(ParseEvent::ReasoningDelta(d)) => {
                self.in_reasoning = true;
                write!(out, "{}", self.paint("2", d))
            }
            AgentEvent::Stream(ParseEvent::ContentDelta(d)) => {
                if std::mem::take(&mut self.in_reasoning) {
                    let _ = writeln!(out);
                }
                write!(out, "{d}")
            }
            AgentEvent::Stream(ParseEvent::ToolCall(call)) => writeln!(
                out,
                "\n{}",
                self.paint(
                    "36",
                    &format!(
                        "→ {}({})",
                        call.name,
                        serde_json::Value::Object(call.arguments.clone())
                    )
                )
            ),
            AgentEvent::Stream(ParseEvent::Error(e)) => {
                writeln!(out, "\n{}", self.paint("31", &format!("✗ {e}")))
            }
            AgentEvent::ToolResult { record, .. } => {
                let text = &record.output.text;
                let shown: String = text.chars().take(DISPLAY_CHARS).collect();
                let more = if text.chars().count() > DISPLAY_CHARS {
                    " …"
                } else {
                    ""
                };
                let code = if record.output.is_error { "31" } else { "33" };
                writeln!(
                    out,
                    "{}",
                    self.paint(
                        code,
                        &format!(
                            "← {}: {shown}{more} ({:.0} ms)",
                            record.name, record.duration_ms
                        )
                    )
                )
            }
            AgentEvent::ModelCall { .. } => Ok(()),
            AgentEvent::Notice(text) => {
                writeln!(out, "\n{}", self.paint("1", &format!("note: {text}")))
            }
        };
        let _ = out.flush();
    }

    pub(super) fn end(&self) {
        if self.enabled {
            println!();
        }
    }
}

/// JSON lines, flushed per event so a crash loses nothing.
struct Transcript {
    file: std::fs::File,
}

impl Transcript {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open transcript {}", path.display()))?;
        Ok(Transcript { file })
    }

    fn write(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(&value)?)?;
        self.file.flush()?;
        Ok(())
    }

    fn record(&mut self, event: &AgentEvent) -> Result<()> {
        match event {
            AgentEvent::ModelCall { round, response } => self.write(json!({
                "event": "model_call", "round": round, "prompt": response.prompt_text,
                "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
                "raw_output": response.raw_output, "finish_reason": response.finish_reason,
                "timings": response.timings, "parsed": response.output,
            })),
            AgentEvent::ToolResult { round, record } => self.write(json!({
                "event": "tool_call", "round": round, "name": record.name, "arguments": record.arguments,
                "result": record.output.text, "is_error": record.output.is_error, "files": record.output.files,
                "duration_ms": record.duration_ms,
            })),
            AgentEvent::Notice(text) => self.write(json!({"event": "notice", "text": text})),
            AgentEvent::Stream(_) => Ok(()),
        }
    }
}
