//! Requests from tools for one completion by the agent's own model: an MCP server's
//! `sampling/createMessage`, asked while the agent waits on that server's tool call. The tool side
//! queues the request and awaits the answer; whoever drives the tools and owns the model (the agent
//! loop, while calls run) takes requests from the queue and answers them. Nothing blocks on a lock held
//! across the completion, so the server's call and its request for a completion cannot deadlock.

use crate::chat::Message;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What a tool asks for: one completion, already checked and capped by the tool.
pub struct SampleAsk {
    /// Who asks (the MCP server's name), for notices and the transcript.
    pub source: String,
    pub system: Option<String>,
    /// User and assistant text messages.
    pub messages: Vec<Message>,
    pub max_tokens: usize,
    pub temperature: Option<f32>,
    pub stop: Vec<String>,
}

/// A queued ask and the way back to the tool that waits for its answer.
pub struct SampleRequest {
    pub ask: SampleAsk,
    reply: oneshot::Sender<Result<Sampled, String>>,
}

/// A completion for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub text: String,
    /// The token limit cut it.
    pub cut: bool,
}

impl SampleRequest {
    /// Sends the answer (a completion, or why there is none) to the tool that asked; a tool that
    /// stopped waiting is not an error.
    pub fn answer(self, result: Result<Sampled, String>) {
        let _ = self.reply.send(result);
    }
}

/// The queue of requests; clones share it.
#[derive(Clone, Default)]
pub struct SampleQueue(Arc<Mutex<VecDeque<SampleRequest>>>);

impl std::fmt::Debug for SampleQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SampleQueue({} waiting)", self.lock().len())
    }
}

impl SampleQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SampleRequest>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request; its answer comes on the receiver (an error if the queue's owner dropped it).
    pub fn ask(&self, ask: SampleAsk) -> oneshot::Receiver<Result<Sampled, String>> {
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(SampleRequest { ask, reply });
        answer
    }

    /// The oldest request still awaited: one whose asker gave up (its call timed out or was
    /// cancelled) is dropped unanswered rather than run for nobody.
    pub fn take(&self) -> Option<SampleRequest> {
        let mut queue = self.lock();
        while let Some(request) = queue.pop_front() {
            if !request.reply.is_closed() {
                return Some(request);
            }
        }
        None
    }
}
