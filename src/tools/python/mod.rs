//! `code_interpreter`: model-written Python run in a wasmtime sandbox (see `sandbox`), stateful
//! across calls within one agent run, with results turned into text for a text-only model.

mod capture;
mod driver;
mod figures;
mod guest_fs;
pub mod runtime;
pub mod sandbox;

use super::{Notices, Tool, ToolOutput};
use runtime::{Progress, Runtime};
use sandbox::{CellResult, CellStatus, Interpreter, PythonSession, SessionOptions};
use serde_json::{Map, Value as Json};
use std::sync::{Arc, Mutex};

/// The sandbox flags of `qwen3-agent python` and `mcp-python`, declared once so the two front ends keep
/// the same names, defaults and help.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Wall-clock seconds per cell; a cell past it loses the session's state.
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true)]
    pub timeout: f64,
    /// Guest memory cap in MB (past it Python raises MemoryError).
    #[arg(long = "memory-mb", visible_alias = "memory", default_value_t = 1024)]
    pub memory_mb: usize,
    /// Read-only dirs mounted at /inputs/<name>.
    #[arg(long = "input")]
    pub inputs: Vec<std::path::PathBuf>,
    /// Where figures are saved, relative to the working directory.
    #[arg(long, default_value = "qwen3-agent-output")]
    pub output_dir: std::path::PathBuf,
    /// The runtime installed by `qwen3-agent setup python` (default: its cache dir).
    #[arg(long)]
    pub runtime_dir: Option<std::path::PathBuf>,
}

impl SandboxArgs {
    /// Opens the runtime the flags name and the session options they ask for.
    pub fn open(&self) -> anyhow::Result<(Runtime, SessionOptions)> {
        let runtime = Runtime::open(self.runtime_dir.as_deref())?;
        let spec = crate::config::CodeInterpreterSpec {
            timeout: self.timeout,
            memory_mb: self.memory_mb,
            inputs: self.inputs.clone(),
            ..Default::default()
        };
        SessionOptions::check_spec(&spec)
            .map_err(|e| anyhow::anyhow!("{e} (set by --timeout and --memory-mb)"))?;
        let output_dir = std::env::current_dir()?.join(&self.output_dir);
        Ok((runtime, SessionOptions::from_spec(&spec, output_dir)))
    }
}

/// The tool name and schema models are trained on (Qwen-Agent's name, one `code` string).
pub const TOOL_NAME: &str = "code_interpreter";
const DESCRIPTION: &str = "Run Python code in a sandboxed, stateful session (like a Jupyter kernel): variables and \
imports persist between calls. numpy, pandas, scipy, scikit-learn and matplotlib are available; open matplotlib \
figures are returned as image links. There is no network and no file access outside the working directory. \
Print the values you want to see.";

/// The `code_interpreter` tool: one session per agent run, opened on the first call (agents that
/// never run code never load the interpreter).
pub struct CodeInterpreter {
    runtime: Runtime,
    options: SessionOptions,
    parameters: Json,
    session: Mutex<Option<PythonSession>>,
    /// Where the first-use compile is announced (none: not announced).
    notices: Option<Notices>,
}

/// The interpreter is compiled or mapped once per process and shared by every session. A mutex, not a
/// `OnceLock`, so two threads asking first do not both compile it (a minute each on a cold cache).
static INTERPRETER: Mutex<Option<Arc<Interpreter>>> = Mutex::new(None);

/// The process-wide interpreter for `runtime` (the first runtime asked for wins); a compile on
/// a cold cache is reported to `progress`.
pub fn interpreter(
    runtime: &Runtime,
    progress: &dyn Fn(Progress),
) -> anyhow::Result<Arc<Interpreter>> {
    let mut slot = INTERPRETER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(interpreter) = slot.as_ref() {
        return Ok(interpreter.clone());
    }
    let loaded = Interpreter::load(runtime.clone(), progress)?;
    *slot = Some(loaded.clone());
    Ok(loaded)
}

impl CodeInterpreter {
    pub fn new(runtime: Runtime, options: SessionOptions) -> Self {
        let parameters = serde_json::json!({
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python code to run."}},
            "required": ["code"]
        });
        CodeInterpreter {
            runtime,
            options,
            parameters,
            session: Mutex::new(None),
            notices: None,
        }
    }

    /// Announces a slow first use (the once-per-machine compile) on `notices`, for the user.
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = Some(notices);
        self
    }

    fn announce(&self, progress: Progress) {
        let Some(notices) = &self.notices else { return };
        match progress {
            Progress::Note(text) => notices.push(text),
            Progress::Compiling => {
                notices.push("compiling the Python sandbox (once per machine, about a minute)...")
            }
            Progress::Download { .. } | Progress::Compiled => {}
        }
    }

    fn run(&self, code: &str) -> anyhow::Result<CellResult> {
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let session = match &mut *slot {
            Some(session) => session,
            None => slot.insert(PythonSession::new(
                interpreter(&self.runtime, &|p| self.announce(p))?,
                self.options.clone(),
            )),
        };
        session.run_cell(code)
    }
}

impl Tool for CodeInterpreter {
    fn name(&self) -> &str {
        TOOL_NAME
    }
    fn description(&self) -> &str {
        DESCRIPTION
    }
    fn parameters(&self) -> &Json {
        &self.parameters
    }
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        let Some(code) = arguments.get("code").and_then(Json::as_str) else {
            return ToolOutput::error("code_interpreter needs a \"code\" string argument");
        };
        match self.run(code) {
            Ok(result) => ToolOutput {
                text: model_text(&result),
                is_error: result.status != CellStatus::Ok,
                files: result
                    .images
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            },
            Err(e) => ToolOutput::error(format!("the Python sandbox is unavailable: {e:#}")),
        }
    }
}

/// What the model reads: stdout, then stderr (tracebacks, notes), the final expression's value,
/// and image links; "Finished execution." when there is nothing.
pub fn model_text(result: &CellResult) -> String {
    let mut parts: Vec<String> = Vec::new();
    let stdout = result.stdout.trim_end_matches('\n');
    if !stdout.is_empty() {
        parts.push(stdout.to_string());
    }
    let stderr = result.stderr.trim_end_matches('\n');
    if !stderr.is_empty() {
        parts.push(if result.status == CellStatus::Ok {
            format!("stderr:\n{stderr}")
        } else {
            stderr.to_string()
        });
    }
    if let Some(value) = &result.result {
        parts.push(value.clone());
    }
    for (i, path) in result.images.iter().enumerate() {
        parts.push(format!("![figure {}]({})", i + 1, path.display()));
    }
    if parts.is_empty() {
        "Finished execution.".into()
    } else {
        parts.join("\n")
    }
}
