//! `chat`'s standard input as lines, read by one thread and taken by whoever waits for one: the prompt
//! between turns, or an MCP server's question asked during a turn (see `chat_elicit`). A question
//! that outlives its turn (the user interrupted the answer) gives up instead of taking the next line
//! typed at the prompt.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a waiting question looks whether its turn is over.
const TURN_POLL: Duration = Duration::from_millis(100);

/// The lines typed, and the current turn's number.
pub struct Input {
    lines: Mutex<Receiver<std::io::Result<String>>>,
    turn: AtomicU64,
}

impl Input {
    /// Starts the thread that reads standard input until its end.
    pub fn start() -> std::io::Result<Arc<Self>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("chat-input".into())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Arc::new(Input {
            lines: Mutex::new(receiver),
            turn: AtomicU64::new(0),
        }))
    }

    /// The next line; `None` at the end of input.
    pub fn next(&self) -> Option<std::io::Result<String>> {
        self.lock().recv().ok()
    }

    /// The current turn, to pass to [`Input::answer`].
    pub fn turn(&self) -> u64 {
        self.turn.load(Ordering::SeqCst)
    }

    /// Ends the current turn: questions still waiting give up.
    pub fn end_turn(&self) {
        self.turn.fetch_add(1, Ordering::SeqCst);
    }

    /// The next line for a question asked during `turn`; `None` at the end of input, on a read error,
    /// or once that turn is over.
    pub fn answer(&self, turn: u64) -> Option<String> {
        let lines = self.lock();
        while self.turn() == turn {
            match lines.recv_timeout(TURN_POLL) {
                Ok(line) => return line.ok(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Receiver<std::io::Result<String>>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}
