//! Python sessions in wasmtime: one Store per session kept across cells (like a Jupyter kernel),
//! with no ambient authority (no network, no subprocess, no host files but the mounts below), and
//! hard limits per cell: wall clock (epoch interruption + async, so host waits such as
//! `time.sleep` are cut too), memory (StoreLimits: Python sees MemoryError), output bytes and
//! the bytes, entries and depth of the files a session writes.
//!
//! Guest file system: `/` is the session's scratch dir (writable), `/usr/local/lib` holds the stdlib
//! zip, matplotlib's data sits where matplotlib looks for it, `/inputs/<name>` are the read-only
//! input dirs an agent names, and `/.qwen3-agent` is the private io dir where the cell driver
//! leaves its report and figures. Everything the guest writes is hostile input: the host reaches
//! the writable dirs only through `guest_fs` (by handle, never following a link), reads only the
//! report (`driver`) and `figure-N.png` files (`figures`) from the private dir, and never acts on
//! a path the guest wrote (ARCHITECTURE.md, "Sandbox invariants").

use super::capture::Capture;
use super::driver::{self, Outcome, PRIVATE_GUEST};
use super::figures;
use super::guest_fs::{GuestDir, WalkBudget};
use super::runtime::{Progress, Runtime, STDLIB_ZIP};
use crate::config::{CodeInterpreterSpec, check};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{
    Config, Engine, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the epoch advances: the granularity of timeouts and of yielding to the host.
const TICK: Duration = Duration::from_millis(10);
/// How often the session's files are measured while a cell runs.
const DISK_CHECK: Duration = Duration::from_millis(200);
/// Files and dirs a session may hold besides its bytes (scratch and private dir together): inodes
/// are a host resource too, and the measuring walk's cost and open handles grow with them.
const DISK_SHAPE: WalkBudget = WalkBudget {
    entries: 100_000,
    depth: 64,
};

/// Per-cell and per-session limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// Bytes kept of stdout and of stderr each; the rest is dropped and flagged.
    pub output_bytes: usize,
    pub scratch_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        SessionOptions::from_spec(&CodeInterpreterSpec::default(), PathBuf::new()).limits
    }
}

/// What a session may see besides its scratch dir, and where figures go.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub limits: Limits,
    /// Read-only host dirs, mounted at `/inputs/<dir name>`.
    pub inputs: Vec<PathBuf>,
    /// Where PNGs of the figures a cell leaves open are saved.
    pub output_dir: PathBuf,
}

impl SessionOptions {
    /// The one translation from user settings (YAML `tools.code_interpreter`, or the flags of
    /// `qwen3-agent python` and `mcp-python`, which fill a spec) to sandbox options. The spec
    /// should have passed `check_spec` (out-of-range values are clamped here, never a panic).
    pub fn from_spec(spec: &CodeInterpreterSpec, output_dir: PathBuf) -> Self {
        let seconds = if spec.timeout.is_nan() {
            0.0
        } else {
            spec.timeout.clamp(0.0, check::MAX_SECONDS)
        };
        SessionOptions {
            limits: Limits {
                timeout: Duration::from_secs_f64(seconds),
                memory_bytes: spec.memory_mb.min(check::MAX_GUEST_MB) << 20,
                output_bytes: spec.max_output_bytes,
                scratch_bytes: spec.scratch_mb.saturating_mul(1 << 20),
            },
            inputs: spec.inputs.clone(),
            output_dir,
        }
    }

    /// What is wrong with `spec`, naming the field, if anything is: the config loader's checks of
    /// `tools.code_interpreter`, for the flags that fill a spec.
    pub fn check_spec(spec: &CodeInterpreterSpec) -> Result<(), String> {
        crate::config::validate::code_interpreter(spec, &[]).map_err(|problem| problem.message)
    }
}

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    Ok,
    /// An exception (traceback in stderr); the session lives on.
    Error,
    /// The wall-clock limit: the session was killed.
    Timeout,
    /// A trap, exit(), or the scratch limit: the session was killed.
    Killed,
}

/// One cell's outcome; the `python` command prints it as one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    pub status: CellStatus,
    pub stdout: String,
    pub stderr: String,
    /// repr() of the cell's final expression, when it has one that is not None.
    pub result: Option<String>,
    pub images: Vec<PathBuf>,
    pub truncated: bool,
    /// The session died in this cell: the next cell starts fresh, with no variables.
    pub session_restarted: bool,
}

/// The compiled interpreter, shared by every session of a process.
pub struct Interpreter {
    engine: Engine,
    module: Module,
    linker: Linker<State>,
    runtime: Runtime,
}

struct State {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

impl Interpreter {
    /// Loads (or compiles once and caches) the module, reporting a compile to `progress`.
    pub fn load(runtime: Runtime, progress: &dyn Fn(Progress)) -> Result<Arc<Interpreter>> {
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_exceptions(true);
        let engine = Engine::new(&config)?;
        let module = runtime.load_module(&engine, progress)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi)?;
        // The guest's door to host tools: we offer none.
        linker.func_wrap("host", "call", |_: i32, _: i32, _: i32, _: i32| -> i32 {
            -1
        })?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("python-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(Arc::new(Interpreter {
            engine,
            module,
            linker,
            runtime,
        }))
    }
}

/// One live interpreter. A cell that kills it (timeout, trap, exit) leaves it unusable: drop it
/// and open another (`PythonSession` does this).
pub struct Session {
    store: Store<State>,
    turn: TypedFunc<(i32, i32), i32>,
    alloc: TypedFunc<i32, i32>,
    memory: Memory,
    rt: tokio::runtime::Runtime,
    stdout: Capture,
    stderr: Capture,
    scratch: GuestDir,
    private: GuestDir,
    options: SessionOptions,
    figures_saved: usize,
}

enum Ended {
    Returned(i32),
    Failed(wasmtime::Error),
    TimedOut,
    /// The session's files went over a limit (why, for the cell's stderr).
    DiskFull(String),
}

impl Session {
    pub fn open(interpreter: &Interpreter, options: SessionOptions) -> Result<Session> {
        let scratch = GuestDir::create("qwen3-agent-python-")?;
        std::fs::create_dir(scratch.path().join("tmp"))?;
        let private = GuestDir::create("qwen3-agent-python-io-")?;
        let (stdout, stderr) = (
            Capture::new(options.limits.output_bytes),
            Capture::new(options.limits.output_bytes),
        );
        let runtime = &interpreter.runtime;
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .arg("/usr/local/bin/python.wasm")
            .env("HOME", "/tmp")
            .env("TMPDIR", "/tmp")
            .env("PYTHONTZPATH", "")
            .env("MPLBACKEND", "Agg")
            .preopened_dir(runtime.lib_dir(), "/usr/local/lib", FsPerms::ReadOnly)?
            .preopened_dir(
                runtime.mpl_data_dir(),
                format!("/usr/local/lib/{STDLIB_ZIP}/matplotlib/mpl-data"),
                FsPerms::ReadOnly,
            )?
            .preopened_dir(scratch.path(), "/", FsPerms::ReadWrite)?
            .preopened_dir(private.path(), PRIVATE_GUEST, FsPerms::ReadWrite)?;
        for dir in &options.inputs {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .context("an input dir needs a name")?;
            wasi.preopened_dir(dir, format!("/inputs/{name}"), FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot mount input dir {}", dir.display()))?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(options.limits.memory_bytes)
            .instances(4)
            .memories(4)
            .tables(16)
            .trap_on_grow_failure(false)
            .build();
        let mut store = Store::new(
            &interpreter.engine,
            State {
                wasi: wasi.build_p1(),
                limits,
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let instance = rt.block_on(
            interpreter
                .linker
                .instantiate_async(&mut store, &interpreter.module),
        )?;
        let turn = instance.get_typed_func::<(i32, i32), i32>(&mut store, "turn")?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "host_alloc")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory")?;
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            rt.block_on(init.call_async(&mut store, ()))?;
        }
        let mut session = Session {
            store,
            turn,
            alloc,
            memory,
            rt,
            stdout,
            stderr,
            scratch,
            private,
            options,
            figures_saved: 0,
        };
        match session.run_turn(driver::DEFINE, Duration::from_secs(60)) {
            Ended::Returned(0) => Ok(session),
            _ => bail!(
                "the Python runtime failed to start: {}",
                session.stderr.take().0
            ),
        }
    }

    fn run_turn(&mut self, code: &str, timeout: Duration) -> Ended {
        let Session {
            store,
            turn,
            alloc,
            memory,
            rt,
            scratch,
            private,
            options,
            ..
        } = self;
        let disk_limit = options.limits.scratch_bytes;
        let Ok(len) = i32::try_from(code.len()) else {
            return Ended::Failed(wasmtime::Error::msg("the cell is larger than 2 GB"));
        };
        let call = async {
            let ptr = alloc.call_async(&mut *store, len).await?;
            memory.write(&mut *store, ptr as u32 as usize, code.as_bytes())?;
            turn.call_async(&mut *store, (ptr, len)).await
        };
        let watch = async {
            loop {
                tokio::time::sleep(DISK_CHECK).await;
                if let Some(why) = disk_excess(scratch, private, disk_limit) {
                    return why;
                }
            }
        };
        rt.block_on(async {
            tokio::select! {
                result = call => match result {
                    Ok(status) => Ended::Returned(status),
                    Err(e) => Ended::Failed(e),
                },
                _ = tokio::time::sleep(timeout) => Ended::TimedOut,
                why = watch => Ended::DiskFull(why),
            }
        })
    }

    /// Runs one cell. The session is dead afterwards when `session_restarted` is set.
    pub fn run_cell(&mut self, code: &str) -> CellResult {
        let limits = self.options.limits.clone();
        if let Err(e) = self.private.clear() {
            return CellResult::lost(format!(
                "the sandbox could not empty its private dir ({e}): session restarted, state was lost\n"
            ));
        }
        let ended = self.run_turn(&driver::call(code, limits.output_bytes), limits.timeout);
        let disk_full = match &ended {
            Ended::DiskFull(why) => Some(why.clone()),
            _ => disk_excess(&self.scratch, &self.private, limits.scratch_bytes),
        };
        let (mut stdout, out_cut) = self.stdout.take();
        let (mut stderr, err_cut) = self.stderr.take();
        let mut note = |text: &str| {
            if !stderr.is_empty() && !stderr.ends_with('\n') {
                stderr.push('\n');
            }
            stderr.push_str(text);
        };
        let (mut value, mut value_cut) = (None, false);
        let status = match ended {
            _ if disk_full.is_some() => {
                let why = disk_full.as_deref().unwrap_or_default();
                note(&format!(
                    "the scratch directory {why}: session restarted, state was lost\n"
                ));
                CellStatus::Killed
            }
            Ended::Returned(0) => match driver::read_report(&self.private, limits.output_bytes) {
                Ok(report) => {
                    let status = match report.status {
                        Outcome::Ok => CellStatus::Ok,
                        Outcome::Error => CellStatus::Error,
                    };
                    (value, value_cut) = report.value(limits.output_bytes);
                    status
                }
                Err(why) => {
                    note(&why);
                    CellStatus::Error
                }
            },
            Ended::Returned(code) if code >= 256 => {
                note(&format!(
                    "the code exited (status {}): session restarted, state was lost\n",
                    code - 256
                ));
                CellStatus::Killed
            }
            Ended::Returned(_) => CellStatus::Error,
            Ended::TimedOut => {
                note(&format!(
                    "timed out after {} s: session restarted, state was lost\n",
                    limits.timeout.as_secs_f64()
                ));
                CellStatus::Timeout
            }
            Ended::Failed(e) => {
                note(&format!(
                    "{}: session restarted, state was lost\n",
                    describe_failure(&e)
                ));
                CellStatus::Killed
            }
            Ended::DiskFull(_) => unreachable!("handled by the first arm"),
        };
        // Figures exist only where the driver finished; after a kill they may be half written.
        let saved = if matches!(status, CellStatus::Ok | CellStatus::Error) {
            let found = figures::collect(
                &self.private,
                &self.options.output_dir,
                &mut self.figures_saved,
            );
            note(&found.notes);
            found.saved
        } else {
            Vec::new()
        };
        if stdout.ends_with("\n\n") {
            stdout.truncate(stdout.trim_end_matches('\n').len() + 1);
        }
        CellResult {
            status,
            stdout,
            stderr,
            result: value,
            images: saved,
            truncated: out_cut || err_cut || value_cut,
            session_restarted: matches!(status, CellStatus::Timeout | CellStatus::Killed),
        }
    }
}

impl CellResult {
    /// A cell that never ran because the session broke; the next cell gets a fresh one.
    fn lost(stderr: String) -> CellResult {
        CellResult {
            status: CellStatus::Killed,
            stdout: String::new(),
            stderr,
            result: None,
            images: Vec::new(),
            truncated: false,
            session_restarted: true,
        }
    }
}

/// Why the session's files (scratch and private dir together) are over the limits, if they are.
fn disk_excess(scratch: &GuestDir, private: &GuestDir, max_bytes: u64) -> Option<String> {
    (scratch.usage(DISK_SHAPE) + private.usage(DISK_SHAPE)).excess(max_bytes, DISK_SHAPE)
}

fn describe_failure(e: &wasmtime::Error) -> String {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return format!("the code exited (status {})", exit.0);
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => {
            "the interpreter ran out of stack (too deep recursion)".into()
        }
        Some(wasmtime::Trap::Interrupt) => "the cell was interrupted".into(),
        Some(trap) => format!("the interpreter crashed ({trap})"),
        None => format!("the interpreter failed ({e})"),
    }
}

/// A session that reopens itself after a cell kills it, as a notebook kernel restarts.
pub struct PythonSession {
    interpreter: Arc<Interpreter>,
    options: SessionOptions,
    live: Option<Session>,
}

impl PythonSession {
    /// A session that opens its interpreter on the first cell.
    pub fn new(interpreter: Arc<Interpreter>, options: SessionOptions) -> Self {
        PythonSession {
            interpreter,
            options,
            live: None,
        }
    }

    /// A session with its interpreter started now (for timing, or to pay the start up front).
    pub fn open(interpreter: Arc<Interpreter>, options: SessionOptions) -> Result<Self> {
        let live = Some(Session::open(&interpreter, options.clone())?);
        Ok(PythonSession {
            interpreter,
            options,
            live,
        })
    }

    pub fn run_cell(&mut self, code: &str) -> Result<CellResult> {
        let session = match &mut self.live {
            Some(session) => session,
            None => self
                .live
                .insert(Session::open(&self.interpreter, self.options.clone())?),
        };
        let result = session.run_cell(code);
        if result.session_restarted {
            self.live = None;
        }
        Ok(result)
    }
}
