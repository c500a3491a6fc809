//! `eval`: run an agent over held-out cases through the real loop and score what it called and
//! what it answered. Cases are JSON lines written by scripts/demo/gen_data.py --cases:
//! `{"task", "prompt", "expect": {"tool", "arguments", "answer"}, "pages": {url: html}}`.
//!
//! Pages are served to the agent's tool servers through a local HTTP proxy (`HTTP_PROXY` in each
//! server's `env`), so fetch cases run offline with unseen URLs. A case whose run fails (a backend
//! error) is scored as failed with its error; a signal stops after the current case; the report is
//! written either way.

use super::assembly::{EngineFlags, assemble_options, print_notice};
use super::signals::{Mode, Signals, StoppedBy};
use super::workers::run_on_workers;
use anyhow::{Context, Result, bail};
use clap::Args;
use qwen3_agent::agent::assemble::{agent_with_backend, check_rounds};
use qwen3_agent::agent::backend_pool::BackendPool;
use qwen3_agent::agent::{RunError, RunResult, StopReason};
use qwen3_agent::chat::Message;
use qwen3_agent::config::check::{self, flag};
use qwen3_agent::config::{self, ResolvedAgent};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Score an agent on held-out cases: right tool with right arguments, and answers that contain the
/// tool's result.
#[derive(Args)]
pub struct EvalArgs {
    agent: PathBuf,
    cases: PathBuf,
    /// Write every case's prompt, calls, answer and verdicts here (JSON).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Fail (exit 1) when the share of right calls is below this.
    #[arg(long, default_value_t = 0.0)]
    min_tool_accuracy: f64,
    /// Fail (exit 1) when the share of answers containing the tool's result is below this.
    #[arg(long, default_value_t = 0.0)]
    min_answer_accuracy: f64,
    /// Cases run at once, each by its own agent; a local model on the CPU is loaded once and their
    /// passes batched. 1: one case after another.
    #[arg(long, default_value_t = 1, value_parser = flag(|n| check::count(n, 256)))]
    parallel: usize,
    /// Sampling temperature for every case (over the agent's `generate`); 0 decodes greedily, so two
    /// evals (say, sequential and --parallel) can be compared verdict by verdict.
    #[arg(long, value_parser = flag(check::temperature))]
    temperature: Option<f32>,
    /// Sampling seed for every case (over the agent's `generate`).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    engine: EngineFlags,
}

#[derive(Deserialize)]
struct Case {
    task: String,
    prompt: String,
    expect: Expected,
    #[serde(default)]
    pages: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Expected {
    tool: Option<String>,
    arguments: Option<Json>,
    /// For code, the program's expected output (a call is right when its output matches).
    answer: Option<String>,
}

#[derive(Serialize)]
struct Verdict {
    task: String,
    prompt: String,
    calls: Vec<Json>,
    tool_results: Vec<String>,
    answer: String,
    right_call: bool,
    answer_has_result: bool,
    seconds: f64,
    /// `answer`, `max_rounds`, `interrupted`, or `error` when the run failed (the case then fails).
    stop_reason: Json,
    /// Why the run failed: the backend's error, a context that cannot fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let signals = Signals::install(Mode::Batch)?;
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;
    let cases: Vec<Case> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}", args.cases.display(), i + 1))
        })
        .collect::<Result<_>>()?;
    let pages: HashMap<String, String> = cases.iter().flat_map(|c| c.pages.clone()).collect();
    let proxy = serve_pages(pages)?;
    let mut definition = config::load_agent(&args.agent)?;
    route_servers_through(&mut definition, &proxy)?;
    args.engine.apply(&mut definition);
    let generate = &mut definition.agent.generate;
    generate.temperature = args.temperature.or(generate.temperature);
    generate.seed = args.seed.or(generate.seed);
    check_rounds(&definition)?;
    let pool = BackendPool::new(
        definition,
        assemble_options(print_notice)?,
        Some(args.parallel.min(cases.len().max(1))),
    )?;
    let started = Instant::now();
    let verdicts = run_cases(&pool, &cases, &signals)?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let n = verdicts.len().max(1) as f64;
    let tool_accuracy = verdicts.iter().filter(|v| v.right_call).count() as f64 / n;
    let answer_accuracy = verdicts.iter().filter(|v| v.answer_has_result).count() as f64 / n;
    let mean_seconds = verdicts.iter().map(|v| v.seconds).sum::<f64>() / n;
    let failed_runs = verdicts.iter().filter(|v| v.error.is_some()).count();
    let mut summary = json!({
        "cases": verdicts.len(),
        "tool_accuracy": tool_accuracy,
        "answer_accuracy": answer_accuracy,
        "mean_seconds_per_case": mean_seconds,
        "failed_runs": failed_runs,
        "parallel": pool.size(),
        "wall_seconds": wall_seconds,
    });
    let stopped_by = signals.received();
    if let Some(signal) = stopped_by {
        summary["stopped_by"] = signal.name().into();
        summary["cases_planned"] = cases.len().into();
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if let Some(path) = &args.report {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&json!({"summary": summary, "cases": verdicts}))?,
        )
        .with_context(|| format!("writing the report {}", path.display()))?;
    }
    if let Some(signal) = stopped_by {
        return Err(StoppedBy(signal).into());
    }
    if tool_accuracy < args.min_tool_accuracy || answer_accuracy < args.min_answer_accuracy {
        bail!(
            "below the bar: tool accuracy {tool_accuracy:.3} (min {}), answer accuracy {answer_accuracy:.3} (min {})",
            args.min_tool_accuracy,
            args.min_answer_accuracy
        );
    }
    Ok(())
}

/// Runs the cases on `pool.size()` threads, each with its own agent taking the next case; the
/// verdicts come back in the cases' order, without the cases a signal kept from starting. Every agent
/// is built (model loaded, servers started) before any case runs, so a failure there runs nothing and
/// a signal during it exits at once; once cases run, a signal interrupts every running agent.
fn run_cases(pool: &BackendPool, cases: &[Case], signals: &Signals) -> Result<Vec<Verdict>> {
    let finished = &AtomicUsize::new(0);
    run_on_workers(
        pool.size(),
        cases.len(),
        signals,
        || {
            let backend = pool.backend()?;
            let agent = agent_with_backend(pool.definition(), pool.options(), backend)?;
            let interrupt = agent.interrupt_flag();
            Ok((agent, Some(interrupt)))
        },
        |agent, i| {
            let case = &cases[i];
            let start = Instant::now();
            let outcome = agent.run(vec![Message::user(case.prompt.clone())], &mut |_| {});
            let verdict = judge(case, outcome, start.elapsed().as_secs_f64());
            let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
            print_verdict(&verdict, done, cases.len());
            verdict
        },
    )
}

/// One line per finished case on stderr: `[done/total]`, the two verdicts, the time, the prompt.
fn print_verdict(verdict: &Verdict, done: usize, total: usize) {
    eprintln!(
        "[{done}/{total}] {} {} {:.1}s  {}{}",
        if verdict.right_call {
            "call:ok "
        } else {
            "call:BAD"
        },
        if verdict.answer_has_result {
            "answer:ok "
        } else {
            "answer:BAD"
        },
        verdict.seconds,
        verdict.prompt,
        verdict
            .error
            .as_deref()
            .map(|e| format!("\n    error: {e}"))
            .unwrap_or_default()
    );
}

/// Scores one case's run; a run that failed is a failed case with its error.
fn judge(case: &Case, outcome: Result<RunResult, RunError>, seconds: f64) -> Verdict {
    let (messages, answer, stop_reason, error) = match outcome {
        Ok(result) => {
            let answer = if result.stop_reason == StopReason::Answer {
                result.content
            } else {
                String::new()
            };
            let stop_reason = serde_json::to_value(result.stop_reason).unwrap_or_default();
            (result.messages, answer, stop_reason, None)
        }
        Err(failure) => (
            failure.messages,
            String::new(),
            Json::from("error"),
            Some(format!("{:#}", failure.error)),
        ),
    };
    let calls: Vec<Json> = messages
        .iter()
        .flat_map(|m| match m {
            Message::Assistant { tool_calls, .. } => tool_calls.clone(),
            _ => Vec::new(),
        })
        .map(|c| json!({"name": c.function.name, "arguments": c.function.arguments}))
        .collect();
    let tool_results: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect();
    let right_call = error.is_none() && right_call(&case.expect, &calls, &tool_results);
    // The answer is empty when the run did not end with one (an error, max_rounds, an interrupt).
    let answer_has_result = !answer.trim().is_empty()
        && match tool_results.last() {
            Some(last) => answer.contains(&result_of(last)),
            None => case.expect.tool.is_none() && calls.is_empty(),
        };
    Verdict {
        task: case.task.clone(),
        prompt: case.prompt.clone(),
        calls,
        tool_results,
        answer,
        right_call,
        answer_has_result,
        seconds,
        stop_reason,
        error,
    }
}

/// Points every MCP server of the agent at the page proxy (`HTTP_PROXY` in its `env`), so fetch cases
/// run offline with unseen URLs. Set per server, not in our own environment: servers get only the
/// variables their config names.
fn route_servers_through(definition: &mut ResolvedAgent, proxy: &str) -> Result<()> {
    let mut servers = config::mcp_servers(definition)?;
    for spec in servers.values_mut() {
        for name in ["HTTP_PROXY", "http_proxy"] {
            spec.env.insert(name.to_string(), proxy.into());
        }
    }
    definition.agent.mcp_servers = servers;
    definition.agent.mcp_config = None;
    Ok(())
}

/// The first call names the expected tool with the expected arguments; for code, equivalent
/// arguments suffice: the program printed the expected output.
fn right_call(expect: &Expected, calls: &[Json], results: &[String]) -> bool {
    let Some(tool) = &expect.tool else {
        return calls.is_empty();
    };
    let Some(first) = calls.first() else {
        return false;
    };
    if first["name"] != tool.as_str() {
        return false;
    }
    if tool == "code_interpreter" {
        return results.first().map(|r| r.trim()) == expect.answer.as_deref().map(str::trim);
    }
    Some(&first["arguments"]) == expect.arguments.as_ref()
}

/// What an answer must quote from a tool's result: the time (HH:MM) from a time result, the first
/// line of a fetched page, or the whole output of a program.
fn result_of(tool_result: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Json>(tool_result) {
        let datetime = value["target"]["datetime"]
            .as_str()
            .or(value["datetime"].as_str());
        if let Some(hm) = datetime.and_then(|d| d.get(11..16)) {
            return hm.to_string();
        }
    }
    if let Some(rest) = tool_result.strip_prefix("Contents of ") {
        let body = rest.split_once(":\n").map_or("", |(_, body)| body);
        let first = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return first.trim_start_matches('#').trim().to_string();
    }
    tool_result.trim().to_string()
}

/// A plain-HTTP proxy on loopback that answers the listed absolute URLs and 404s the rest.
fn serve_pages(pages: HashMap<String, String>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = format!("http://{}", listener.local_addr()?);
    let pages = Arc::new(pages);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let pages = pages.clone();
            std::thread::spawn(move || answer(stream, &pages));
        }
    });
    Ok(address)
}

fn answer(stream: TcpStream, pages: &HashMap<String, String>) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let url = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match pages
        .get(url)
        .or_else(|| pages.get(url.trim_end_matches('/')))
    {
        Some(html) => ("200 OK", html.as_str()),
        None => (
            "404 Not Found",
            "<html><body><p>Not found.</p></body></html>",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&stream).write_all(response.as_bytes());
}
