//! The executor thread: owns the model and every sequence's cache, collects the sequences' forward
//! requests, and runs them in shared passes. It decides when a pass starts (once every sequence that
//! is mid-generation has asked for its next one, or a short wait has passed); `policy` decides which
//! rows a pass runs (oldest sequences first, within `step_tokens`) and whose cache goes when the pool
//! is full; `slot` is what it keeps per sequence.

mod policy;
mod slot;

use super::{BatchOptions, BatchStats};
use crate::model::{KvCache, Qwen3, Segment};
use anyhow::{Result, anyhow};
use slot::{Activity, Piece, Request, Slot};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a `SequenceDecoder` asks of the executor; one sequence's messages arrive in order.
pub(super) enum Message {
    Forward {
        sequence: u64,
        ids: Vec<u32>,
        all_logits: bool,
        reply: mpsc::Sender<Result<Vec<f32>>>,
    },
    Truncate {
        sequence: u64,
        len: usize,
    },
    /// A prompt is about to be prefilled: take over the idle cache sharing the longest prefix with
    /// it, if that beats the sequence's own, and reply with the ids now cached.
    Adopt {
        sequence: u64,
        prompt: Vec<u32>,
        reply: mpsc::Sender<Vec<u32>>,
    },
    /// The sequence's generation ended: do not wait for its next request.
    Idle {
        sequence: u64,
    },
    Close {
        sequence: u64,
    },
}

pub(super) struct Executor {
    model: Qwen3,
    options: BatchOptions,
    stats: Arc<BatchStats>,
    slots: HashMap<u64, Slot>,
    /// Positions all caches have written together.
    pool_used: usize,
    admissions: u64,
    passes: u64,
    /// How long the last pass took: a slow sequence is waited for at most a quarter of it.
    last_pass_time: Duration,
    /// When the oldest unserved request arrived.
    waiting_since: Option<Instant>,
}

impl Executor {
    pub(super) fn new(model: Qwen3, options: BatchOptions, stats: Arc<BatchStats>) -> Self {
        Executor {
            model,
            options,
            stats,
            slots: HashMap::new(),
            pool_used: 0,
            admissions: 0,
            passes: 0,
            last_pass_time: Duration::ZERO,
            waiting_since: None,
        }
    }

    /// Serves messages until every sender is gone.
    pub(super) fn run(mut self, inbox: mpsc::Receiver<Message>) {
        loop {
            let message = if self.waiting_since.is_none() {
                match inbox.recv() {
                    Ok(message) => Some(message),
                    Err(_) => return,
                }
            } else if self.all_asked() {
                match inbox.try_recv() {
                    Ok(message) => Some(message),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                let wait = self
                    .gather_deadline()
                    .saturating_duration_since(Instant::now());
                match inbox.recv_timeout(wait) {
                    Ok(message) => Some(message),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            };
            match message {
                Some(message) => self.handle(message),
                None => self.pass(),
            }
        }
    }

    /// Whether no sequence mid-generation is still to ask for its next pass.
    fn all_asked(&self) -> bool {
        !self
            .slots
            .values()
            .any(|slot| matches!(slot.activity, Activity::Answered))
    }

    /// When to stop waiting for sequences mid-generation that have not asked yet (sampling, a
    /// grammar's mask, or a caller that will not come back soon): a quarter of a pass, 1–50 ms.
    fn gather_deadline(&self) -> Instant {
        let patience =
            (self.last_pass_time / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
        self.waiting_since.unwrap_or_else(Instant::now) + patience
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Forward {
                sequence,
                ids,
                all_logits,
                reply,
            } => self.accept(sequence, ids, all_logits, reply),
            Message::Truncate { sequence, len } => {
                if let Some(slot) = self.slots.get_mut(&sequence) {
                    slot.tokens.truncate(len);
                    if let Some(cache) = &mut slot.cache {
                        cache.truncate(len.min(cache.len()));
                    }
                }
            }
            Message::Adopt {
                sequence,
                prompt,
                reply,
            } => {
                self.adopt(sequence, &prompt);
                // Its generation has begun: from here no other sequence may take its cache, and its
                // age counts from now.
                self.admissions += 1;
                let admission = self.admissions;
                let slot = self.slot(sequence);
                if matches!(slot.activity, Activity::Idle) {
                    slot.activity = Activity::Answered;
                    slot.admitted = admission;
                }
                let _ = reply.send(slot.tokens.clone());
            }
            Message::Idle { sequence } => {
                if let Some(slot) = self.slots.get_mut(&sequence)
                    && matches!(slot.activity, Activity::Answered)
                {
                    slot.activity = Activity::Idle;
                    // Its cache may now make room for a request that waited on it.
                    self.waiting_since =
                        self.waiting_since.or(self.any_waiting().then(Instant::now));
                }
            }
            Message::Close { sequence } => {
                if let Some(slot) = self.slots.remove(&sequence) {
                    self.pool_used -= slot.touched;
                    self.waiting_since =
                        self.waiting_since.or(self.any_waiting().then(Instant::now));
                }
            }
        }
    }

    /// Queues a request, or answers it with an error at once when it could never run.
    fn accept(
        &mut self,
        sequence: u64,
        ids: Vec<u32>,
        all_logits: bool,
        reply: mpsc::Sender<Result<Vec<f32>>>,
    ) {
        let (context, vocab) = (self.options.context_length, self.model.config.vocab_size);
        let admission = self.admissions + 1;
        let slot = self.slot(sequence);
        let problem = if ids.is_empty() {
            Some("forward needs at least one token".to_string())
        } else if slot.tokens.len() + ids.len() > context {
            Some(format!(
                "the context is full: {} cached + {} new tokens exceed the {context} positions \
                 allocated (raise context_length)",
                slot.tokens.len(),
                ids.len()
            ))
        } else {
            ids.iter()
                .find(|&&id| id as usize >= vocab)
                .map(|bad| format!("token id {bad} is outside the vocabulary (size {vocab})"))
        };
        if let Some(problem) = problem {
            let _ = reply.send(Err(anyhow!(problem)));
            return;
        }
        let admitted = matches!(slot.activity, Activity::Idle);
        if admitted {
            slot.admitted = admission;
        }
        slot.activity = Activity::Waiting(Request {
            ids,
            done: 0,
            all_logits,
            logits: Vec::new(),
            reply,
        });
        if admitted {
            self.admissions = admission;
        }
        self.waiting_since.get_or_insert_with(Instant::now);
    }

    /// Runs one pass over the waiting sequences and answers those it finished.
    fn pass(&mut self) {
        let pieces = self.plan();
        if pieces.is_empty() {
            // Only older sequences' caches stand in the way: wait for their next request or their end.
            self.waiting_since = self.any_waiting().then(Instant::now);
            return;
        }
        let started = Instant::now();
        let mut caches: Vec<KvCache> = pieces
            .iter()
            .map(|piece| {
                let slot = self.slots.get_mut(&piece.sequence).expect("planned slot");
                slot.cache.take().expect("the plan gave it a cache")
            })
            .collect();
        let mut segments: Vec<Segment<'_>> = pieces
            .iter()
            .zip(caches.iter_mut())
            .map(|(piece, cache)| Segment {
                ids: &piece.ids,
                cache,
                all_logits: piece.all_logits,
            })
            .collect();
        // A panic in the pass (a bug) fails this pass's requests, not every later one.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.model.forward_batch(&mut segments)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(anyhow!(
                "the batched forward pass panicked (a bug; please report it): {what}"
            ))
        });
        drop(segments);
        self.passes += 1;
        self.last_pass_time = started.elapsed();
        let rows: usize = pieces.iter().map(|piece| piece.ids.len()).sum();
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.stats
            .max_sequences
            .fetch_max(pieces.len(), Ordering::Relaxed);
        match outcome {
            Ok(logits) => {
                for ((piece, cache), logits) in pieces.into_iter().zip(caches).zip(logits) {
                    self.advance(piece, cache, logits);
                }
            }
            Err(error) => {
                // Only a bug gets here (requests are checked on arrival): fail the pass's requests and
                // drop their caches, so nothing half-written is ever read.
                for piece in &pieces {
                    let slot = self.slots.get_mut(&piece.sequence).expect("planned slot");
                    self.pool_used -= slot.touched;
                    slot.touched = 0;
                    if let Activity::Waiting(request) =
                        std::mem::replace(&mut slot.activity, Activity::Answered)
                    {
                        slot.tokens.truncate(slot.tokens.len() - request.done);
                        let _ = request.reply.send(Err(anyhow!("{error:#}")));
                    }
                }
            }
        }
        self.waiting_since = self.any_waiting().then(Instant::now);
    }

    fn any_waiting(&self) -> bool {
        self.slots
            .values()
            .any(|slot| matches!(slot.activity, Activity::Waiting(_)))
    }

    /// Puts a piece's cache back and moves its request on; a finished request is answered.
    fn advance(&mut self, piece: Piece, cache: KvCache, logits: Vec<f32>) {
        let slot = self.slots.get_mut(&piece.sequence).expect("planned slot");
        slot.cache = Some(cache);
        slot.last_pass = self.passes;
        if !piece.of_request {
            self.stats
                .recomputed
                .fetch_add(piece.ids.len() as u64, Ordering::Relaxed);
            return;
        }
        let Activity::Waiting(request) = &mut slot.activity else {
            unreachable!("a request's rows ran for a sequence that was not waiting");
        };
        slot.tokens.extend_from_slice(&piece.ids);
        request.done += piece.ids.len();
        if request.all_logits {
            request.logits.extend(logits);
        } else {
            request.logits = logits;
        }
        if request.done == request.ids.len()
            && let Activity::Waiting(request) =
                std::mem::replace(&mut slot.activity, Activity::Answered)
        {
            // The caller may have given up (its thread ended); nothing else waits on this.
            let _ = request.reply.send(Ok(request.logits));
        }
    }
}
