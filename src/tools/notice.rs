//! Notices from tools (a server's stderr, a restart, a slow first compile) for the user, not the model.
//! Tools run on their own threads and know nothing of terminals: they push here, and whoever drives
//! the tools (the agent loop, `tools --call`) drains the queue and reports each as an `AgentEvent`.

use std::sync::{Arc, Mutex};

/// A shared queue of notices; clones share one queue.
#[derive(Clone, Default, Debug)]
pub struct Notices(Arc<Mutex<Vec<String>>>);

impl Notices {
    /// Queues a notice (never blocks on a reader; a poisoned lock still takes it).
    pub fn push(&self, text: impl Into<String>) {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queue.push(text.into());
    }

    /// Takes every queued notice, oldest first.
    pub fn drain(&self) -> Vec<String> {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *queue)
    }
}

#[cfg(test)]
mod tests {
    use super::Notices;

    #[test]
    fn clones_share_one_queue_and_drain_empties_it() {
        let notices = Notices::default();
        let sender = notices.clone();
        sender.push("first");
        sender.push(String::from("second"));
        assert_eq!(notices.drain(), vec!["first", "second"]);
        assert!(notices.drain().is_empty());
    }
}
