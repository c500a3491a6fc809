//! A signal that the calls of one dispatch should stop: the user interrupted the run. Tools that can
//! stop a call early and tell the other side (MCP: `notifications/cancelled`) watch it; the rest run on
//! and the registry's caller abandons them.

use std::sync::Arc;
use tokio::sync::watch;

/// Set once, seen by every clone, awaited from async code or read from any thread.
#[derive(Clone, Debug)]
pub struct Cancel(Arc<watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Cancel(Arc::new(watch::Sender::new(false)))
    }
}

impl Cancel {
    /// Stops the calls that watch it, now and any that start later.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once `cancel` was called (at once when it was already).
    pub async fn cancelled(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = seen.wait_for(|cancelled| *cancelled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Cancel;

    #[test]
    fn clones_see_the_cancel_and_waiters_wake() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cancel = Cancel::default();
        let other = cancel.clone();
        assert!(!other.is_cancelled());
        let waiter = std::thread::spawn(move || runtime.block_on(other.cancelled()));
        cancel.cancel();
        waiter.join().unwrap();
        assert!(cancel.is_cancelled());
    }
}
