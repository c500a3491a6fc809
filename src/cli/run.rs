//! `run`: execute a task file, streaming thinking, answer and tool activity; optional JSON result and
//! JSON-lines transcript. `tools`: list an agent's tools as the prompt shows them, or call one.

use super::assembly::{EngineFlags, assemble_options, print_notice};
use super::printer::Printer;
use super::signals::{Mode, Signals, StoppedBy};
use anyhow::{Context, Result, bail};
use clap::Args;
use qwen3_agent::agent::assemble::{build_agent, build_mcp_tools, build_tools, start_mcp_servers};
use qwen3_agent::agent::transcript::Transcript;
use qwen3_agent::agent::{AgentEvent, RunResult};
use qwen3_agent::config::{self, Expect};
use serde_json::json;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Run a task (an agent plus its input) to a final answer.
#[derive(Args)]
pub struct RunArgs {
    /// The task file (YAML).
    task: PathBuf,
    /// Render prompts with thinking disabled (wins over the agent file and /think).
    #[arg(long)]
    no_thinking: bool,
    /// Print only the final result as JSON: {"content", "reasoning_content", "messages", "rounds",
    /// "usage", "stop_reason"}.
    #[arg(long)]
    json: bool,
    /// Append one JSON line per event to this file, flushed as it goes.
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Print only the final answer.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    engine: EngineFlags,
}

/// The transcript, shared with the signal handler (which writes the last line when it ends the run).
type SharedTranscript = Arc<Mutex<Option<Transcript>>>;

fn lock(transcript: &SharedTranscript) -> MutexGuard<'_, Option<Transcript>> {
    transcript.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(args: RunArgs) -> Result<()> {
    let signals = Signals::install(Mode::Batch)?;
    let task = config::load_task(&args.task)?;
    let mut agent_def = task.agent.clone();
    if args.no_thinking {
        agent_def.agent.generate.thinking = Some(false);
    }
    args.engine.apply(&mut agent_def);
    let transcript: SharedTranscript = Arc::new(Mutex::new(
        args.transcript
            .as_deref()
            .map(Transcript::open)
            .transpose()?,
    ));
    if let Some(t) = lock(&transcript).as_mut() {
        t.start(&task.source, &agent_def)?;
    }
    let last_words = transcript.clone();
    signals.on_exit(move |signal| {
        if let Some(t) = lock(&last_words).as_mut() {
            let _ = t.end(json!({"stop_reason": "interrupted", "signal": signal.name()}));
        }
    });
    let noted = transcript.clone();
    let options = assemble_options(move |text| {
        print_notice(text);
        if let Some(t) = lock(&noted).as_mut() {
            let _ = t.record(&AgentEvent::Notice(text));
        }
    })?;
    let mut agent = build_agent(&agent_def, &options)?;
    let input = match &task.prompt_from {
        Some(from) => agent
            .prompt_messages(Some(&from.server), &from.name, &from.arguments)
            .with_context(|| format!("{}: prompt_from", from.at))?,
        None => task.messages.clone(),
    };
    signals.watch(agent.interrupt_flag());
    let mut printer = Printer::new(!args.json && !args.quiet);
    let mut transcript_error = None;
    let outcome = signals.busy(|| {
        agent.run(input, &mut |event| {
            printer.show(&event);
            if let Some(t) = lock(&transcript).as_mut()
                && let Err(e) = t.record(&event)
            {
                transcript_error.get_or_insert(e);
            }
        })
    });
    let stopped_by = signals.received();
    if let Some(t) = lock(&transcript).as_mut() {
        let mut end = match &outcome {
            Ok(result) => json!({"rounds": result.rounds, "stop_reason": result.stop_reason,
                "usage": result.usage, "content": result.content}),
            Err(failure) => json!({"rounds": failure.rounds, "stop_reason": "error",
                "usage": failure.usage, "error": failure.to_string()}),
        };
        if let Some(signal) = stopped_by {
            end["stop_reason"] = "interrupted".into();
            end["signal"] = signal.name().into();
        }
        t.end(end)?;
    }
    if let Some(e) = transcript_error {
        return Err(e.context("writing the transcript"));
    }
    let result = outcome?;
    if let Some(signal) = stopped_by {
        printer.end();
        return Err(StoppedBy(signal).into());
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
    /// Print the agent's MCP prompts instead of its tools: [{"server", "name", "title", "description",
    /// "arguments"}].
    #[arg(long, conflicts_with_all = ["call", "mcp_config"])]
    prompts: bool,
    /// The call's arguments as a JSON object.
    #[arg(long, default_value = "{}", requires = "call")]
    args: String,
    /// Seconds before a call is abandoned (with --mcp-config; an agent file sets its own).
    #[arg(long, default_value_t = 60.0, value_parser = config::check::flag(config::check::seconds))]
    timeout: f64,
}

pub fn tools(args: ToolsArgs) -> Result<()> {
    // No part of this command watches an interrupt flag: a signal kills the servers and exits at once.
    let _signals = Signals::install(Mode::Batch)?;
    let options = assemble_options(print_notice)?;
    if args.prompts {
        let agent = args
            .agent
            .as_deref()
            .context("--prompts needs an agent file")?;
        let prompts = start_mcp_servers(&config::load_agent(agent)?, &options)?
            .map(|source| source.prompts())
            .unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&prompts)?);
        return Ok(());
    }
    let registry = match (&args.agent, &args.mcp_config) {
        (Some(agent), _) => build_tools(&config::load_agent(agent)?, &options)?,
        (None, Some(path)) => {
            let timeout = Duration::from_secs_f64(args.timeout);
            build_mcp_tools(&config::load_mcp_config(path)?, timeout, &options)?
        }
        (None, None) => bail!("give an agent file or --mcp-config"),
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
            let record = registry
                .dispatch(&[(name.clone(), arguments)])
                .pop()
                .context("the registry returned no record for the call")?;
            for notice in registry.notices().drain() {
                print_notice(&notice);
            }
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
