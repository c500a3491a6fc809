//! Continuous batching on the CPU: one model serves many sequences at once. Each sequence is driven by
//! its own `Engine` (its own thread, sampler, stop rules, speculation) through a `SequenceDecoder`;
//! their forward calls meet in one executor thread (`scheduler`) that runs them together, so every
//! weight is read once per pass for all their rows. Decoding is bandwidth-bound, so four sequences
//! cost far less than four times one.
//!
//! Nothing a sequence sees changes with batching: the CPU model computes every row as it would alone
//! (`Qwen3::forward_batch`), a preempted sequence's cache is recomputed before it runs again, and the
//! sampler stays in the sequence's own engine.

pub mod bench;
mod scheduler;

use crate::model::decoder::Decoder;
use crate::model::{Qwen3, Qwen3Config};
use anyhow::{Context, Result, anyhow};
use scheduler::{Executor, Message};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

/// How the executor fills a pass and how much KV memory all sequences may use together.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Positions one sequence's cache may hold (its context).
    pub context_length: usize,
    /// Rows one pass runs at most. Sequences are served oldest first; a prompt longer than what is
    /// left is read in pieces over several passes, so sequences already decoding keep decoding
    /// while it is read.
    pub step_tokens: usize,
    /// Positions all caches may hold together (at least `context_length`). Past it, idle sequences'
    /// caches are dropped first, then the newest running sequences are preempted; either recomputes
    /// its cache when it runs again, so memory pressure costs time, never a wrong answer.
    pub pool_positions: usize,
}

impl BatchOptions {
    /// `context_length` per sequence, passes of up to `PREFILL_STEP` rows, and a pool of what half
    /// the memory now available holds (never less than one full context, never more than
    /// `sequences` full ones).
    /// Where the available memory cannot be read, one full context per sequence. Caches are
    /// allocated zeroed for a whole context and the pages are committed as positions are written,
    /// which is what the pool counts.
    pub fn for_memory(model: &Qwen3, context_length: usize, sequences: usize) -> Self {
        let most = context_length * sequences.max(1);
        let fits = available_memory_bytes().map_or(most, |bytes| {
            bytes / 2 / model.kv_bytes_per_position().max(1)
        });
        BatchOptions {
            context_length,
            step_tokens: crate::model::decoder::PREFILL_STEP,
            pool_positions: fits.clamp(context_length, most),
        }
    }
}

/// MemAvailable from /proc/meminfo (Linux); None elsewhere.
fn available_memory_bytes() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Counters of what the executor did, for `bench` and the server's metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Forward passes run.
    pub passes: AtomicU64,
    /// Rows they ran (prompt pieces, decoded tokens, recomputed positions).
    pub rows: AtomicU64,
    /// Sequences in the largest pass so far.
    pub max_sequences: AtomicUsize,
    /// Idle sequences' caches dropped for room.
    pub evictions: AtomicU64,
    /// Running sequences' caches dropped for room (recomputed when they run again).
    pub preemptions: AtomicU64,
    /// Positions recomputed after an eviction or preemption.
    pub recomputed: AtomicU64,
    /// Prompt positions a sequence reused from another (idle) sequence's cache it took over.
    pub adopted: AtomicU64,
}

/// The shared model: hands out a `SequenceDecoder` per sequence. The executor thread ends when the
/// batcher and every decoder it handed out are gone.
pub struct Batcher {
    messages: mpsc::Sender<Message>,
    config: Qwen3Config,
    options: BatchOptions,
    decode_bytes_per_token: usize,
    next_sequence: AtomicU64,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// Starts the executor thread that owns `model` and every sequence's cache.
    pub fn start(model: Qwen3, options: BatchOptions) -> Result<Arc<Self>> {
        anyhow::ensure!(
            options.step_tokens > 0 && options.context_length > 0,
            "a batch needs room for at least one row and one position"
        );
        let options = BatchOptions {
            pool_positions: options.pool_positions.max(options.context_length),
            ..options
        };
        let (messages, inbox) = mpsc::channel();
        let stats = Arc::new(BatchStats::default());
        let config = model.config.clone();
        let decode_bytes_per_token = model.decode_bytes_per_token();
        let executor = Executor::new(model, options, stats.clone());
        std::thread::Builder::new()
            .name("batch".into())
            .spawn(move || executor.run(inbox))
            .context("starting the batch executor thread")?;
        Ok(Arc::new(Batcher {
            messages,
            config,
            options,
            decode_bytes_per_token,
            next_sequence: AtomicU64::new(0),
            stats,
        }))
    }

    /// A decoder for one more sequence, with an empty cache.
    pub fn sequence(&self) -> SequenceDecoder {
        SequenceDecoder {
            id: self.next_sequence.fetch_add(1, Ordering::Relaxed),
            messages: self.messages.clone(),
            tokens: Vec::new(),
            config: self.config.clone(),
            context_length: self.options.context_length,
            decode_bytes_per_token: self.decode_bytes_per_token,
        }
    }

    pub fn options(&self) -> BatchOptions {
        self.options
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }
}

/// One sequence of a `Batcher`: a `Decoder` whose passes run batched with the other sequences'.
/// Its cache lives in the executor; this side mirrors the ids cached, refreshed before each prompt
/// (`prepare_for` may swap in another idle sequence's cache), so prefix reuse works as on a decoder
/// of its own.
pub struct SequenceDecoder {
    id: u64,
    messages: mpsc::Sender<Message>,
    tokens: Vec<u32>,
    config: Qwen3Config,
    context_length: usize,
    decode_bytes_per_token: usize,
}

impl SequenceDecoder {
    fn send(&self, message: Message) -> Result<()> {
        self.messages.send(message).map_err(|_| {
            anyhow!("the batch executor has stopped (a bug; please report it with the log above)")
        })
    }
}

impl Decoder for SequenceDecoder {
    fn config(&self) -> &Qwen3Config {
        &self.config
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate_cache(&mut self, len: usize) {
        if len < self.tokens.len() {
            self.tokens.truncate(len);
            // Ordered before this sequence's next pass; a stopped executor fails that pass instead.
            let _ = self.send(Message::Truncate {
                sequence: self.id,
                len,
            });
        }
    }

    fn capacity(&self) -> usize {
        self.context_length
    }

    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let (reply, answer) = mpsc::channel();
        self.send(Message::Forward {
            sequence: self.id,
            ids: ids.to_vec(),
            all_logits,
            reply,
        })?;
        let logits = answer
            .recv()
            .map_err(|_| anyhow!("the batch executor stopped during a forward pass"))??;
        self.tokens.extend_from_slice(ids);
        Ok(logits)
    }

    fn prepare_for(&mut self, prompt: &[u32]) -> Result<()> {
        let (reply, answer) = mpsc::channel();
        self.send(Message::Adopt {
            sequence: self.id,
            prompt: prompt.to_vec(),
            reply,
        })?;
        self.tokens = answer
            .recv()
            .map_err(|_| anyhow!("the batch executor stopped"))?;
        Ok(())
    }

    fn generation_done(&mut self) {
        let _ = self.send(Message::Idle { sequence: self.id });
    }

    fn host_decode_bytes_per_token(&self) -> Option<usize> {
        Some(self.decode_bytes_per_token)
    }
}

impl Drop for SequenceDecoder {
    fn drop(&mut self) {
        let _ = self.send(Message::Close { sequence: self.id });
    }
}

#[cfg(test)]
mod tests;
