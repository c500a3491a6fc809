//! Counters for `GET /metrics` in Prometheus' text format: requests by status, tokens, the queue and
//! request latency (from arrival to the last byte of the answer).

use crate::engine::batch::BatchStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    prompt_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    latency_micros: AtomicU64,
    latency_count: AtomicU64,
    cancelled: AtomicU64,
    cancelled_tokens: AtomicU64,
}

impl Metrics {
    /// A finished chat request: its status and how long it took.
    pub fn request(&self, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
        self.latency_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The tokens of an answered request.
    pub fn tokens(&self, prompt: usize, cached: usize, completion: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.cached_tokens
            .fetch_add(cached as u64, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion as u64, Ordering::Relaxed);
    }

    /// A request whose client left before its answer was complete (its generation was stopped, or
    /// never started), and the tokens generated for it: how soon the engine let go shows there.
    pub fn cancelled(&self, generated: usize) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        self.cancelled_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
    }

    /// The exposition text; `queued` is the number of requests waiting now.
    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP qwen3_agent_requests_total Chat completion requests by HTTP status.\n\
             # TYPE qwen3_agent_requests_total counter"
        );
        for (status, count) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "qwen3_agent_requests_total{{status=\"{status}\"}} {count}"
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "qwen3_agent_prompt_tokens_total",
            "Prompt tokens of answered requests.",
            load(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "qwen3_agent_cached_prompt_tokens_total",
            "Prompt tokens reused from the previous request's cache.",
            load(&self.cached_tokens),
        );
        counter(
            &mut out,
            "qwen3_agent_completion_tokens_total",
            "Generated tokens.",
            load(&self.completion_tokens),
        );
        counter(
            &mut out,
            "qwen3_agent_cancelled_total",
            "Requests whose client left before the answer was complete.",
            load(&self.cancelled),
        );
        counter(
            &mut out,
            "qwen3_agent_cancelled_completion_tokens_total",
            "Tokens generated for requests whose client left (generation stops at the next token).",
            load(&self.cancelled_tokens),
        );
        let _ = writeln!(
            out,
            "# HELP qwen3_agent_queue_depth Requests waiting for the engine.\n\
             # TYPE qwen3_agent_queue_depth gauge\nqwen3_agent_queue_depth {queued}\n\
             # HELP qwen3_agent_request_duration_seconds Time from a request's arrival to its answer's end.\n\
             # TYPE qwen3_agent_request_duration_seconds summary\n\
             qwen3_agent_request_duration_seconds_sum {}\n\
             qwen3_agent_request_duration_seconds_count {}",
            load(&self.latency_micros) as f64 / 1e6,
            load(&self.latency_count)
        );
        out
    }
}

/// One counter in the exposition format.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// The shared model's batching counters, when the engine threads share one (`serve --parallel`).
pub fn render_batch(stats: &BatchStats) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    for (name, help, value) in [
        (
            "qwen3_agent_batch_passes_total",
            "Forward passes of the shared model.",
            load(&stats.passes),
        ),
        (
            "qwen3_agent_batch_rows_total",
            "Rows those passes ran (prompt pieces, decoded tokens, recomputed positions).",
            load(&stats.rows),
        ),
        (
            "qwen3_agent_batch_evictions_total",
            "Idle sequences' caches dropped for room.",
            load(&stats.evictions),
        ),
        (
            "qwen3_agent_batch_preemptions_total",
            "Running sequences' caches dropped for room (recomputed when they run again).",
            load(&stats.preemptions),
        ),
        (
            "qwen3_agent_batch_recomputed_total",
            "Positions recomputed after an eviction or preemption.",
            load(&stats.recomputed),
        ),
        (
            "qwen3_agent_batch_adopted_total",
            "Prompt positions reused from another idle sequence's cache.",
            load(&stats.adopted),
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    let _ = writeln!(
        out,
        "# HELP qwen3_agent_batch_max_sequences The most sequences one pass has run.\n\
         # TYPE qwen3_agent_batch_max_sequences gauge\nqwen3_agent_batch_max_sequences {}",
        stats.max_sequences.load(Ordering::Relaxed)
    );
    out
}
