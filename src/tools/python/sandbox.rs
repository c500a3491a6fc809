//! Python sessions in wasmtime: one Store per session kept across cells (like a Jupyter kernel),
//! with no ambient authority (no network, no subprocess, no host files but the mounts below), and
//! hard limits per cell: wall clock (epoch interruption + async, so host waits such as
//! `time.sleep` are cut too), memory (StoreLimits: Python sees MemoryError), output bytes and
//! scratch-dir bytes.
//!
//! Guest file system: `/` is the session's scratch dir (writable), `/usr/local/lib` holds the stdlib
//! zip, matplotlib's data sits where matplotlib looks for it, `/inputs/<name>` are the read-only
//! input dirs an agent names, and `/.qwen3-agent` is where the cell driver leaves its status and
//! figures for the host.

use super::runtime::{Runtime, STDLIB_ZIP};
use crate::config::CodeInterpreterSpec;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use wasmtime::{
    Config, Engine, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the epoch advances: the granularity of timeouts and of yielding to the host.
const TICK: Duration = Duration::from_millis(10);
/// How often the scratch dir's size is checked while a cell runs.
const SCRATCH_CHECK: Duration = Duration::from_millis(200);
const PRIVATE_GUEST: &str = "/.qwen3-agent";

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
    /// `qwen3-agent python` and `mcp-python`, which fill a spec) to sandbox options.
    pub fn from_spec(spec: &CodeInterpreterSpec, output_dir: PathBuf) -> Self {
        SessionOptions {
            limits: Limits {
                timeout: Duration::from_secs_f64(spec.timeout),
                memory_bytes: spec.memory_mb << 20,
                output_bytes: spec.max_output_bytes,
                scratch_bytes: spec.scratch_mb << 20,
            },
            inputs: spec.inputs.clone(),
            output_dir,
        }
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
    /// Loads (or compiles once and caches) the module; `on_compile` is called before a compile.
    pub fn load(runtime: Runtime, on_compile: impl FnOnce()) -> Result<Arc<Interpreter>> {
        let mut config = Config::new();
        config.epoch_interruption(true).wasm_exceptions(true);
        let engine = Engine::new(&config)?;
        let module = runtime.load_module(&engine, on_compile)?;
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

/// Output captured up to a byte limit; later bytes are counted and dropped, never refused (a
/// refused write would become an OSError inside the guest).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<CaptureBuf>>);

#[derive(Default)]
struct CaptureBuf {
    bytes: Vec<u8>,
    limit: usize,
    dropped: usize,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture(Arc::new(Mutex::new(CaptureBuf {
            limit,
            ..Default::default()
        })))
    }
    /// The text so far (with a note when cut) and whether it was cut; clears the buffer.
    fn take(&self) -> (String, bool) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from_utf8_lossy(&buf.bytes).into_owned();
        let cut = buf.dropped > 0;
        if cut {
            text.push_str(&format!(
                "\n[output truncated: {} more bytes not shown]\n",
                buf.dropped
            ));
        }
        buf.bytes.clear();
        buf.dropped = 0;
        (text, cut)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = buf.limit.saturating_sub(buf.bytes.len()).min(data.len());
        buf.bytes.extend_from_slice(&data[..room]);
        buf.dropped += data.len() - room;
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The cell driver, defined once per session: runs a cell in `__main__`, keeps the final
/// expression's repr, prints a traceback without the driver's frames, saves open figures.
const DRIVER: &str = r#"
def __qwen3_agent_cell(src):
    import ast, sys, json, traceback
    main = sys.modules["__main__"].__dict__
    status = {"status": "ok", "result": None, "figures": []}
    try:
        tree = ast.parse(src, "<cell>", "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, "<cell>", "exec"), main)
        if last is not None:
            value = eval(compile(last, "<cell>", "eval"), main)
            if value is not None:
                main["_"] = value
                status["result"] = repr(value)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        status["status"] = "error"
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "<cell>":
            tb = tb.tb_next
        sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))
    finally:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            for n, num in enumerate(plt.get_fignums()):
                path = f"/.qwen3-agent/figure-{n}.png"
                try:
                    plt.figure(num).savefig(path, format="png")
                    status["figures"].append(path)
                except Exception as e:
                    sys.stderr.write(f"could not save figure {num}: {e}\n")
            plt.close("all")
        sys.stdout.flush()
        sys.stderr.flush()
        with open("/.qwen3-agent/status.json", "w") as f:
            json.dump(status, f)
import builtins
builtins.__qwen3_agent_cell = __qwen3_agent_cell
del __qwen3_agent_cell, builtins
"#;

#[derive(serde::Deserialize)]
struct DriverStatus {
    status: String,
    result: Option<String>,
    figures: Vec<String>,
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
    scratch: tempfile::TempDir,
    private: tempfile::TempDir,
    options: SessionOptions,
    figures_saved: usize,
}

enum Ended {
    Returned(i32),
    Failed(wasmtime::Error),
    TimedOut,
    ScratchFull,
}

impl Session {
    pub fn open(interpreter: &Interpreter, options: SessionOptions) -> Result<Session> {
        let scratch = tempfile::Builder::new()
            .prefix("qwen3-agent-python-")
            .tempdir()?;
        std::fs::create_dir(scratch.path().join("tmp"))?;
        let private = tempfile::Builder::new()
            .prefix("qwen3-agent-python-io-")
            .tempdir()?;
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
        match session.run_turn(DRIVER, Duration::from_secs(60)) {
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
            options,
            ..
        } = self;
        let scratch_limit = options.limits.scratch_bytes;
        let scratch_path = scratch.path().to_path_buf();
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
                tokio::time::sleep(SCRATCH_CHECK).await;
                if dir_size(&scratch_path) > scratch_limit {
                    return;
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
                _ = watch => Ended::ScratchFull,
            }
        })
    }

    /// Runs one cell. The session is dead afterwards when `session_restarted` is set.
    pub fn run_cell(&mut self, code: &str) -> CellResult {
        let _ = std::fs::remove_file(self.private.path().join("status.json"));
        let literal = serde_json::to_string(code).expect("strings serialize");
        let ended = self.run_turn(
            &format!("__qwen3_agent_cell({literal})"),
            self.options.limits.timeout,
        );
        let scratch_full = matches!(ended, Ended::ScratchFull)
            || dir_size(self.scratch.path()) > self.options.limits.scratch_bytes;
        let (mut stdout, out_cut) = self.stdout.take();
        let (mut stderr, err_cut) = self.stderr.take();
        let status_file = std::fs::read_to_string(self.private.path().join("status.json")).ok();
        let driver: Option<DriverStatus> =
            status_file.and_then(|text| serde_json::from_str(&text).ok());
        let seconds = self.options.limits.timeout.as_secs_f64();
        let mut note = |text: String| {
            if !stderr.is_empty() && !stderr.ends_with('\n') {
                stderr.push('\n');
            }
            stderr.push_str(&text);
        };
        let status = match ended {
            _ if scratch_full => {
                let mb = self.options.limits.scratch_bytes >> 20;
                note(format!(
                    "the scratch directory went over its {mb} MB limit: session restarted, state was lost\n"
                ));
                CellStatus::Killed
            }
            Ended::Returned(0) => match &driver {
                Some(d) if d.status == "ok" => CellStatus::Ok,
                _ => CellStatus::Error,
            },
            Ended::Returned(code) if code >= 256 => {
                note(format!(
                    "the code exited (status {}): session restarted, state was lost\n",
                    code - 256
                ));
                CellStatus::Killed
            }
            Ended::Returned(_) => CellStatus::Error,
            Ended::TimedOut => {
                note(format!(
                    "timed out after {seconds} s: session restarted, state was lost\n"
                ));
                CellStatus::Timeout
            }
            Ended::Failed(e) => {
                note(format!(
                    "{}: session restarted, state was lost\n",
                    describe_failure(&e)
                ));
                CellStatus::Killed
            }
            Ended::ScratchFull => unreachable!("handled by the first arm"),
        };
        if stdout.ends_with("\n\n") {
            stdout.truncate(stdout.trim_end_matches('\n').len() + 1);
        }
        let images = driver
            .as_ref()
            .map(|d| self.collect_figures(&d.figures))
            .unwrap_or_default();
        CellResult {
            status,
            stdout,
            stderr,
            result: driver.and_then(|d| d.result),
            images,
            truncated: out_cut || err_cut,
            session_restarted: matches!(status, CellStatus::Timeout | CellStatus::Killed),
        }
    }

    /// Moves the figures the driver saved into the output dir, named uniquely for this run.
    fn collect_figures(&mut self, guest_paths: &[String]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if std::fs::create_dir_all(&self.options.output_dir).is_err() {
            return out;
        }
        for guest in guest_paths {
            let Some(name) = guest.strip_prefix(&format!("{PRIVATE_GUEST}/")) else {
                continue;
            };
            let from = self.private.path().join(name);
            self.figures_saved += 1;
            let to = unique_figure_path(&self.options.output_dir, self.figures_saved);
            if std::fs::rename(&from, &to)
                .or_else(|_| std::fs::copy(&from, &to).map(|_| ()))
                .is_ok()
            {
                out.push(to);
            }
        }
        out
    }
}

fn unique_figure_path(dir: &Path, n: usize) -> PathBuf {
    let stamp = std::process::id();
    let mut k = 0;
    loop {
        let name = if k == 0 {
            format!("figure-{stamp}-{n}.png")
        } else {
            format!("figure-{stamp}-{n}-{k}.png")
        };
        let path = dir.join(name);
        if !path.exists() {
            return path;
        }
        k += 1;
    }
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

/// Bytes of regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
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
