//! SIGINT (Ctrl-C) and SIGTERM while agents and tools run. Every MCP server's process group is killed at
//! once (a stdio server that ignores EOF would otherwise outlive us), the agent stops at its next safe
//! point (generation stops, calls still running are abandoned), the command writes why it stopped and
//! exits 130 (SIGINT) or 143 (SIGTERM). Where nothing would notice the interrupt soon (a model still
//! loading, a tool call made directly), or at a second signal, the command exits from the handler at
//! once, after its last words (the transcript's `run_end` line).
//!
//! In `chat` the first Ctrl-C during an answer stops only that answer; Ctrl-C at the prompt, a second
//! Ctrl-C before the answer has stopped, or SIGTERM ends the program.
//!
//! signal-hook, not ctrlc: its handler thread is told which signal came, and the exit code depends on it.

use anyhow::{Context, Result};
use qwen3_agent::tools::mcp;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A signal that ends or interrupts a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as shells report a command ended by it.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// The error a command returns when a signal stopped it; `main` turns it into the signal's exit code.
#[derive(Debug)]
pub struct StoppedBy(pub Signal);

impl std::fmt::Display for StoppedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.0.name())
    }
}

impl std::error::Error for StoppedBy {}

/// How a command reacts to signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `run`, `eval`, `tools --call`: any signal stops the command.
    Batch,
    /// `chat`: the first Ctrl-C during an answer stops the answer only.
    Chat,
}

/// Signal handling installed for one command.
pub struct Signals {
    shared: Arc<Shared>,
}

type LastWords = Box<dyn FnOnce(Signal) + Send>;

struct Shared {
    mode: Mode,
    /// The first signal that stopped a batch command.
    received: Mutex<Option<Signal>>,
    /// Signals received by a batch command (the second one exits at once).
    count: AtomicUsize,
    /// The running agents' interrupt flags.
    interrupt: Mutex<Vec<Arc<AtomicBool>>>,
    /// The main thread is in a section that watches `interrupt` (an agent run) and will stop soon.
    busy: AtomicBool,
    /// Run before exiting from the handler.
    last_words: Mutex<Option<LastWords>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Signals {
    /// Takes over SIGINT and SIGTERM for the rest of the process.
    pub fn install(mode: Mode) -> Result<Self> {
        let shared = Arc::new(Shared {
            mode,
            received: Mutex::new(None),
            count: AtomicUsize::new(0),
            interrupt: Mutex::new(Vec::new()),
            busy: AtomicBool::new(false),
            last_words: Mutex::new(None),
        });
        let mut incoming = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .context("installing the SIGINT/SIGTERM handlers")?;
        let handler = shared.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for number in incoming.forever() {
                    handler.on_signal(if number == SIGTERM {
                        Signal::Terminate
                    } else {
                        Signal::Interrupt
                    });
                }
            })
            .context("starting the signal thread")?;
        Ok(Signals { shared })
    }

    /// Adds a flag a signal sets to stop an agent (its `interrupt_flag`); `eval --parallel` watches
    /// every running agent's.
    pub fn watch(&self, interrupt: Arc<AtomicBool>) {
        lock(&self.shared.interrupt).push(interrupt);
    }

    /// What to do before exiting straight from the handler (e.g. write the transcript's last line).
    pub fn on_exit(&self, last_words: impl FnOnce(Signal) + Send + 'static) {
        *lock(&self.shared.last_words) = Some(Box::new(last_words));
    }

    /// Runs `work`, which watches the interrupt flag, so a signal meanwhile stops it instead of
    /// exiting the process from the handler.
    pub fn busy<T>(&self, work: impl FnOnce() -> T) -> T {
        self.shared.busy.store(true, Ordering::SeqCst);
        let result = work();
        self.shared.busy.store(false, Ordering::SeqCst);
        result
    }

    /// The signal that stopped the command, if one came.
    pub fn received(&self) -> Option<Signal> {
        *lock(&self.shared.received)
    }
}

impl Shared {
    fn on_signal(&self, signal: Signal) {
        match self.mode {
            Mode::Chat => {
                let busy = self.busy.load(Ordering::SeqCst);
                if signal == Signal::Interrupt && busy && !self.set_interrupt() {
                    return;
                }
                self.exit_now(signal)
            }
            Mode::Batch => {
                let first = self.count.fetch_add(1, Ordering::SeqCst) == 0;
                // Recorded before `busy` is read: a busy section that ends now still sees it.
                lock(&self.received).get_or_insert(signal);
                let busy = self.busy.load(Ordering::SeqCst);
                self.set_interrupt();
                mcp::kill_all_servers();
                if !first || !busy {
                    self.exit_now(signal)
                }
            }
        }
    }

    /// Sets the agents' flags; true if one was set already (nobody has honoured it yet).
    fn set_interrupt(&self) -> bool {
        // Every flag is set (no short-circuit): all running agents stop.
        let mut already = false;
        for flag in lock(&self.interrupt).iter() {
            already |= flag.swap(true, Ordering::SeqCst);
        }
        already
    }

    fn exit_now(&self, signal: Signal) -> ! {
        mcp::kill_all_servers();
        if let Some(last_words) = lock(&self.last_words).take() {
            last_words(signal);
        }
        eprintln!("\nstopped by {}", signal.name());
        std::process::exit(signal.exit_code().into())
    }
}
