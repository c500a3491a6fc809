//! `run` with several runs (several task files, a task's `prompts:`): they run at once on one model
//! (`BackendPool`: a local model on the CPU is loaded once and their passes batched; a GPU model or a
//! script answers one run after another), each by a fresh agent (its own tools and MCP servers, as if
//! run alone) on one of the pool's backends. Nothing streams: each run's output is printed whole,
//! labelled, when it ends; `--json` prints one array in input order at the end; each run has its own
//! transcript. A failed run or failed `expect:` does not stop the others; the exit code says whether
//! any did, and the error names them.

use super::assembly::{assemble_options, print_notice};
use super::printer::{Printer, printable};
use super::progress;
use super::run::{Outputs, Planned, end_fields, failed_checks, interrupted_end, result_json};
use super::signals::{Signals, StoppedBy};
use super::workers::run_on_workers;
use anyhow::{Context, Result, bail};
use qwen3_agent::agent::assemble::{AgentTools, AssembleOptions, check_rounds};
use qwen3_agent::agent::backend_pool::{BackendPool, DEFAULT_PARALLEL};
use qwen3_agent::agent::transcript::Transcript;
use qwen3_agent::agent::{AgentEvent, RunError, RunResult, Usage};
use qwen3_agent::backend::Backend;
use serde_json::{Value as Json, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// What became of one run.
struct Finished {
    label: String,
    outcome: Result<RunResult, RunError>,
    /// What the task's `expect:` found wrong; `None` when it has none or the run failed.
    failed_checks: Option<Vec<String>>,
    /// What the run showed (the printer's output, or the answer with `--quiet`).
    shown: String,
    transcript_error: Option<String>,
}

impl Finished {
    /// Why the run counts as failed, if it does.
    fn problem(&self) -> Option<String> {
        let problem = match (&self.outcome, &self.failed_checks) {
            (Err(failure), _) => Some(failure.to_string()),
            (Ok(_), Some(checks)) if !checks.is_empty() => {
                Some(format!("expectations failed: {}", checks.join("; ")))
            }
            _ => None,
        };
        match (problem, &self.transcript_error) {
            (Some(problem), _) => Some(problem),
            (None, Some(error)) => Some(format!("writing the transcript: {error}")),
            (None, None) => None,
        }
    }

    /// The run as `--json` shows it: `run`'s result object with its label, and why it failed.
    fn json(&self) -> Json {
        let mut value = match &self.outcome {
            Ok(result) => result_json(result),
            Err(failure) => json!({"content": "", "reasoning_content": null,
                "messages": failure.messages, "rounds": failure.rounds, "usage": failure.usage,
                "stop_reason": "error"}),
        };
        value["label"] = self.label.clone().into();
        if let Some(problem) = self.problem()
            && self.failed_checks.as_ref().is_none_or(Vec::is_empty)
        {
            value["error"] = problem.into();
        }
        if let Some(checks) = &self.failed_checks {
            value["failed_checks"] = json!(checks);
        }
        value
    }
}

/// The transcripts of the runs going, by run (`None`: none asked, not started, or written to its
/// end), shared with the signal handler.
type Transcripts = Arc<Mutex<Vec<Option<Transcript>>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs every planned run, `parallel` at once (default `DEFAULT_PARALLEL`), and reports them.
pub(super) fn run_all(
    outputs: &Outputs,
    parallel: Option<usize>,
    runs: Vec<Planned>,
    signals: &Signals,
) -> Result<()> {
    one_model(&runs)?;
    for run in &runs {
        check_rounds(&run.definition)?;
    }
    // Each run opens its own when it starts; a file that cannot be opened fails the command first
    // (and one made by the check is removed, so a run that never starts leaves none).
    if let Some(path) = &outputs.transcript {
        for n in 1..=runs.len() {
            let file = numbered(path, n);
            let existed = file.exists();
            Transcript::open(&file)?;
            if !existed {
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    let transcripts: Transcripts = Arc::new(Mutex::new(runs.iter().map(|_| None).collect()));
    let last_words = transcripts.clone();
    signals.on_exit(move |signal| {
        for transcript in lock(&last_words).iter_mut().flatten() {
            let _ = transcript.end(interrupted_end(signal));
        }
    });
    let at_once = parallel.unwrap_or(DEFAULT_PARALLEL).min(runs.len());
    let pool = BackendPool::new(
        (*runs[0].definition).clone(),
        assemble_options(print_notice)?,
        Some(at_once),
    )?;
    let started = Instant::now();
    let finished = run_on_pool(&pool, &runs, outputs, &transcripts, signals)?;
    let seconds = started.elapsed().as_secs_f64();
    if outputs.json {
        let array: Vec<Json> = finished.iter().map(Finished::json).collect();
        println!("{}", serde_json::to_string(&array)?);
    }
    if let Some(signal) = signals.received() {
        return Err(StoppedBy(signal).into());
    }
    let failed: Vec<&str> = finished
        .iter()
        .filter(|run| run.problem().is_some())
        .map(|run| run.label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed: {}",
            failed.len(),
            runs.len(),
            failed.join(", ")
        );
    }
    eprintln!(
        "all {} runs succeeded in {seconds:.1} s ({} at once)",
        runs.len(),
        pool.size()
    );
    Ok(())
}

/// Refuses runs whose agents ask for different models: the runs of one command share one loaded
/// model (their passes batched on the CPU), and two 8B models would not fit beside each other.
fn one_model(runs: &[Planned]) -> Result<()> {
    let model = |run: &Planned| -> Result<Json> {
        let mut spec = serde_json::to_value(&run.definition.agent.model)?;
        // One directory named by two agent files in different places is one model.
        if let Some(path) = &run.definition.agent.model.path
            && let Ok(canonical) = std::fs::canonicalize(path)
        {
            spec["path"] = json!(canonical);
        }
        Ok(spec)
    };
    let first = model(&runs[0])?;
    for run in &runs[1..] {
        if model(run)? != first {
            bail!(
                "{} (agent {}) and {} (agent {}) use different models: the runs of one `run` share \
                 one loaded model, so give their agents the same `model:` or run them separately",
                runs[0].label,
                runs[0].definition.source.display(),
                run.label,
                run.definition.source.display()
            );
        }
    }
    Ok(())
}

/// `path` with `-n` before its extension: t.jsonl → t-2.jsonl (t → t-2).
fn numbered(path: &Path, n: usize) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(extension) => format!("{stem}-{n}.{}", extension.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

/// Runs the runs on `pool.size()` threads, each with its own backend taking the next run; what
/// became of them comes back in input order, without the runs a signal kept from starting. Every
/// backend is made (the model loaded) before any run starts, so a failure there runs nothing and a
/// signal during it exits at once; once runs go, a signal interrupts every running agent.
fn run_on_pool(
    pool: &BackendPool,
    runs: &[Planned],
    outputs: &Outputs,
    transcripts: &Transcripts,
    signals: &Signals,
) -> Result<Vec<Finished>> {
    // Each run's agent registers its own interrupt flag while it runs (`RunContext::go`).
    run_on_workers(
        pool.size(),
        runs.len(),
        signals,
        || Ok((Some(pool.backend()?), None)),
        |backend, i| {
            let run = RunContext {
                run: &runs[i],
                index: i,
                options: pool.options(),
                outputs,
                transcripts,
                signals,
            };
            let done = run.go(backend);
            show(&done, outputs);
            done
        },
    )
}

/// One run about to go, and what it reports to.
struct RunContext<'a> {
    run: &'a Planned,
    /// Its place in input order (its transcript's).
    index: usize,
    options: &'a AssembleOptions,
    outputs: &'a Outputs,
    transcripts: &'a Transcripts,
    signals: &'a Signals,
}

impl RunContext<'_> {
    /// Starts the run's tools, lends them `backend` for the run and takes it back.
    fn go(&self, backend: &mut Option<Box<dyn Backend>>) -> Finished {
        let run = self.run;
        let mut transcript_error = None;
        if let Some(path) = &self.outputs.transcript {
            match Transcript::open(&numbered(path, self.index + 1)) {
                Ok(transcript) => lock(self.transcripts)[self.index] = Some(transcript),
                Err(e) => transcript_error = Some(format!("{e:#}")),
            }
        }
        self.write_transcript(&mut transcript_error, |t| {
            t.start(&run.task.source, &run.definition)
        });
        // With --json or --quiet nothing is shown on stdout but the results: notices go to stderr
        // at once, labelled; otherwise the printer keeps them with the run's output.
        let plain = self.outputs.json || self.outputs.quiet;
        let mut printer = match plain {
            true => Printer::new(false),
            false => Printer::buffered(),
        };
        let mut on_event = |event: AgentEvent| {
            match &event {
                AgentEvent::Notice(text) if plain => {
                    print_notice(&format!("[{}] {text}", run.label))
                }
                _ => printer.show(&event),
            }
            self.write_transcript(&mut transcript_error, |t| t.record(&event));
        };
        let outcome = self.agent_run(backend, &mut on_event);
        let stopped_by = self.signals.received();
        self.write_transcript(&mut transcript_error, |t| {
            let mut end = end_fields(&outcome, stopped_by);
            end["label"] = run.label.clone().into();
            t.end(end)
        });
        lock(self.transcripts)[self.index] = None;
        let failed_checks = match (&outcome, &run.task.expect) {
            (Ok(result), Some(expect)) => Some(failed_checks(expect, result)),
            _ => None,
        };
        let shown = match (&outcome, self.outputs.quiet) {
            (Ok(result), true) => format!("{}\n", printable(&result.content)),
            (_, true) => String::new(),
            (_, false) => printer.take(),
        };
        Finished {
            label: run.label.clone(),
            outcome,
            failed_checks,
            shown,
            transcript_error,
        }
    }

    /// The run itself: a fresh agent (its tools started, `backend` lent to it) on the run's input.
    fn agent_run(
        &self,
        backend: &mut Option<Box<dyn Backend>>,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> Result<RunResult, RunError> {
        let not_run = |error: anyhow::Error| RunError {
            error,
            messages: Vec::new(),
            rounds: 0,
            usage: Usage::default(),
        };
        let run = self.run;
        let tools = AgentTools::start(&run.definition, self.options).map_err(not_run)?;
        let lent = backend
            .take()
            .context("the run's backend was lost by an earlier run")
            .map_err(not_run)?;
        let mut agent = tools.with_backend(&run.definition, lent);
        let interrupt = agent.interrupt_flag();
        self.signals.watch(interrupt.clone());
        // A signal that came before the flag was watched stops the run before its first model call.
        if self.signals.received().is_some() {
            interrupt.store(true, Ordering::SeqCst);
        }
        let outcome = match run.input(&agent) {
            Ok(input) => agent.run(input, on_event),
            Err(error) => Err(not_run(error)),
        };
        *backend = Some(agent.into_backend());
        outcome
    }

    /// Applies `write` to the run's transcript, if it has one; the first failure is kept in `error`
    /// (the run then counts as failed, as a single run does).
    fn write_transcript(
        &self,
        error: &mut Option<String>,
        write: impl FnOnce(&mut Transcript) -> Result<()>,
    ) {
        if let Some(transcript) = lock(self.transcripts)[self.index].as_mut()
            && let Err(e) = write(transcript)
        {
            error.get_or_insert(format!("{e:#}"));
        }
    }
}

/// Prints what a run showed, whole and labelled, the moment it ends (stderr says why it failed).
fn show(run: &Finished, outputs: &Outputs) {
    progress::above_bars(|| {
        if !outputs.json {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "=== {} ===\n{}", run.label, run.shown);
            let _ = out.flush();
        }
        if let Some(problem) = run.problem() {
            eprintln!("{} failed: {}", run.label, printable(&problem));
        }
    });
}
