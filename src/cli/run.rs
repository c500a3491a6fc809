//! `run`: execute task files, streaming thinking, answer and tool activity; optional JSON result and
//! JSON-lines transcript. Several runs (several task files, a task's `prompts:`) go to `run_many`.
//! `tools`: list an agent's tools as the prompt shows them, or call one.

use super::assembly::{EngineFlags, assemble_options, print_notice};
use super::printer::Printer;
use super::signals::{Mode, Signal, Signals, StoppedBy};
use anyhow::{Context, Result, bail};
use clap::Args;
use qwen3_agent::agent::assemble::{
    AgentTools, AssembleOptions, build_agent, build_backend, build_mcp_tools, build_tools,
    start_mcp_servers,
};
use qwen3_agent::agent::transcript::Transcript;
use qwen3_agent::agent::{AgentEvent, RunError, RunResult};
use qwen3_agent::backend::Deferred;
use qwen3_agent::chat::Message;
use qwen3_agent::config::check::{self, flag};
use qwen3_agent::config::{self, Expect, ResolvedAgent, ResolvedTask};
use qwen3_agent::tools::CallRecord;
use serde_json::{Value as Json, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Run tasks (an agent plus its input) to a final answer; several at once, batched on one model.
#[derive(Args)]
pub struct RunArgs {
    /// The task files (YAML). Several, or a task with `prompts:`, run at once: each result is printed
    /// labelled when its run ends (`file`, `file#N` for the Nth of `prompts:`), then a summary.
    #[arg(required = true)]
    tasks: Vec<PathBuf>,
    /// Render prompts with thinking disabled (wins over the agent file and /think).
    #[arg(long)]
    no_thinking: bool,
    /// Print only the final result as JSON: {"content", "reasoning_content", "messages", "rounds",
    /// "usage", "stop_reason"}; with several runs, an array of them in input order, each with its
    /// "label" (and "error" for a run that failed, "failed_checks" for a task with `expect:`).
    #[arg(long)]
    json: bool,
    /// Append one JSON line per event to this file, flushed as it goes. With several runs, one file
    /// per run, numbered in input order: t.jsonl gives t-1.jsonl, t-2.jsonl, ...
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Print only the final answer.
    #[arg(long)]
    quiet: bool,
    /// With several runs, how many run at once (default 4), each by its own agent; a local model on
    /// the CPU is loaded once and their passes batched. 1: one after another.
    #[arg(long, value_parser = flag(|n| check::count(n, 256)))]
    parallel: Option<usize>,
    #[command(flatten)]
    engine: EngineFlags,
}

/// One run of an agent: a task file's `prompt`, `messages` or `prompt_from`, or one of its `prompts`.
pub(super) struct Planned {
    /// The task file as given, and `#N` for the Nth of its `prompts:`.
    pub label: String,
    pub task: Arc<ResolvedTask>,
    /// The agent with the command's flags applied.
    pub definition: Arc<ResolvedAgent>,
    /// The input; `None`: the task's `prompt_from`, got when the run starts.
    pub input: Option<Vec<Message>>,
}

impl Planned {
    /// The run's input: its messages, or those of the MCP prompt its task starts from.
    pub fn input(&self, agent: &qwen3_agent::agent::Agent) -> Result<Vec<Message>> {
        match (&self.input, &self.task.prompt_from) {
            (Some(messages), _) => Ok(messages.clone()),
            (None, Some(from)) => agent
                .prompt_messages(Some(&from.server), &from.name, &from.arguments)
                .with_context(|| format!("{}: prompt_from", from.at)),
            (None, None) => bail!("{}: the task has no input", self.task.source.display()),
        }
    }
}

/// The runs of the task files, in order (every file loaded and checked first).
fn plan(args: &RunArgs) -> Result<Vec<Planned>> {
    let mut runs = Vec::new();
    for file in &args.tasks {
        let task = Arc::new(config::load_task(file)?);
        let mut definition = task.agent.clone();
        if args.no_thinking {
            definition.agent.generate.thinking = Some(false);
        }
        args.engine.apply(&mut definition);
        let definition = Arc::new(definition);
        let inputs: Vec<Option<Vec<Message>>> = match task.inputs.len() {
            0 => vec![None],
            _ => task.inputs.iter().cloned().map(Some).collect(),
        };
        let numbered = inputs.len() > 1;
        for (i, input) in inputs.into_iter().enumerate() {
            let label = match numbered {
                true => format!("{}#{}", file.display(), i + 1),
                false => file.display().to_string(),
            };
            runs.push(Planned {
                label,
                task: task.clone(),
                definition: definition.clone(),
                input,
            });
        }
    }
    Ok(runs)
}

/// The transcript, shared with the signal handler (which writes the last line when it ends the run).
type SharedTranscript = Arc<Mutex<Option<Transcript>>>;

fn lock(transcript: &SharedTranscript) -> MutexGuard<'_, Option<Transcript>> {
    transcript.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(args: RunArgs) -> Result<()> {
    let signals = Signals::install(Mode::Batch)?;
    let mut runs = plan(&args)?;
    if runs.len() > 1 {
        return super::run_many::run_all(&args.outputs(), args.parallel, runs, &signals);
    }
    let run = runs.pop().context("no task to run")?;
    let (task, agent_def) = (&run.task, &run.definition);
    let transcript: SharedTranscript = Arc::new(Mutex::new(
        args.transcript
            .as_deref()
            .map(Transcript::open)
            .transpose()?,
    ));
    if let Some(t) = lock(&transcript).as_mut() {
        t.start(&task.source, agent_def)?;
    }
    let last_words = transcript.clone();
    signals.on_exit(move |signal| {
        if let Some(t) = lock(&last_words).as_mut() {
            let _ = t.end(interrupted_end(signal));
        }
    });
    let noted = transcript.clone();
    let options = assemble_options(move |text| {
        print_notice(text);
        if let Some(t) = lock(&noted).as_mut() {
            let _ = t.record(&AgentEvent::Notice(text));
        }
    })?;
    let mut agent = build_agent(agent_def, &options)?;
    let input = run.input(&agent)?;
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
        t.end(end_fields(&outcome, stopped_by))?;
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
        println!("{}", serde_json::to_string(&result_json(&result))?);
    } else if args.quiet {
        println!("{}", result.content);
    } else {
        printer.end();
    }
    if let Some(expect) = &task.expect {
        let failures = failed_checks(expect, &result);
        if !failures.is_empty() {
            bail!("expectations failed: {}", failures.join("; "));
        }
    }
    Ok(())
}

/// How the results of several runs are shown (`run_many`).
pub(super) struct Outputs {
    pub json: bool,
    pub quiet: bool,
    pub transcript: Option<PathBuf>,
}

impl RunArgs {
    fn outputs(&self) -> Outputs {
        Outputs {
            json: self.json,
            quiet: self.quiet,
            transcript: self.transcript.clone(),
        }
    }
}

/// The result as `--json` prints it.
pub(super) fn result_json(result: &RunResult) -> Json {
    json!({"content": result.content, "reasoning_content": result.reasoning_content,
        "messages": result.messages, "rounds": result.rounds, "usage": result.usage,
        "stop_reason": result.stop_reason})
}

/// The transcript's `run_end` fields for a run's outcome (`interrupted` when a signal stopped it).
pub(super) fn end_fields(
    outcome: &Result<RunResult, RunError>,
    stopped_by: Option<Signal>,
) -> Json {
    let mut end = match outcome {
        Ok(result) => json!({"rounds": result.rounds, "stop_reason": result.stop_reason,
            "usage": result.usage, "content": result.content}),
        Err(failure) => json!({"rounds": failure.rounds, "stop_reason": "error",
            "usage": failure.usage, "error": failure.to_string()}),
    };
    if let Some(signal) = stopped_by {
        end["stop_reason"] = "interrupted".into();
        end["signal"] = signal.name().into();
    }
    end
}

/// The transcript's `run_end` fields written when a signal ends the command at once.
pub(super) fn interrupted_end(signal: Signal) -> Json {
    json!({"stop_reason": "interrupted", "signal": signal.name()})
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
    /// Call this tool and print {"is_error", "text", "files"}. With an agent file, MCP servers' sampling
    /// requests are answered by the agent's model, as in a run (loaded when the first one comes).
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
    let options = Arc::new(assemble_options(print_notice)?);
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
    let arguments = args
        .call
        .as_ref()
        .map(|_| call_arguments(&args.args))
        .transpose()?;
    if let (Some(agent), Some(name), Some(arguments)) = (&args.agent, &args.call, &arguments) {
        return print_record(&call_with_model(
            &config::load_agent(agent)?,
            &options,
            name,
            arguments.clone(),
        )?);
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
            let record = registry
                .dispatch(&[(name.clone(), arguments.unwrap_or_default())])
                .pop()
                .context("the registry returned no record for the call")?;
            for notice in registry.notices().drain() {
                print_notice(&notice);
            }
            print_record(&record)?;
        }
    }
    Ok(())
}

/// One call of an agent's tool, its MCP servers' sampling requests answered by the agent's model —
/// loaded when the first one comes (`Deferred`), so a call that never samples loads nothing.
fn call_with_model(
    definition: &ResolvedAgent,
    options: &Arc<AssembleOptions>,
    name: &str,
    arguments: serde_json::Map<String, Json>,
) -> Result<CallRecord> {
    let tools = AgentTools::start(definition, options)?;
    let (model, made_with) = (definition.clone(), options.clone());
    let backend = Deferred::new(move || build_backend(&model, &made_with));
    let mut agent = tools.with_backend(definition, Box::new(backend));
    agent.call_tool(name, arguments, &mut |event| match event {
        AgentEvent::Notice(text) => print_notice(text),
        AgentEvent::Sampling { ask, outcome } => print_notice(&match outcome {
            Ok(response) => format!(
                "the model answered {}: {}",
                ask.source, response.output.content
            ),
            Err(error) => format!("the model did not answer {}: {error}", ask.source),
        }),
        _ => {}
    })
}

fn call_arguments(text: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(text).context("--args must be a JSON object")
}

/// A call's result as `tools --call` prints it: {"is_error", "text", "files"}.
fn print_record(record: &CallRecord) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string(&json!({"is_error": record.output.is_error,
            "text": record.output.text, "files": record.output.files}))?
    );
    Ok(())
}

/// What `expect:` asked that the result does not do (empty: every check passed).
pub(super) fn failed_checks(expect: &Expect, result: &RunResult) -> Vec<String> {
    let called: Vec<&str> = result
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { name: Some(n), .. } => Some(n.as_str()),
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
    failures
}
