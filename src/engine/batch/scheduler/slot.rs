//! What the executor keeps per sequence: its tokens and cache, and whether it is idle, mid-generation
//! or waiting for a request's rows; and one sequence's rows in a pass.

use crate::model::KvCache;
use anyhow::Result;
use std::sync::mpsc;

/// A forward request being served, possibly over several passes.
pub(super) struct Request {
    pub(super) ids: Vec<u32>,
    /// Ids already run.
    pub(super) done: usize,
    pub(super) all_logits: bool,
    pub(super) logits: Vec<f32>,
    pub(super) reply: mpsc::Sender<Result<Vec<f32>>>,
}

pub(super) enum Activity {
    /// Between generations: nothing to wait for.
    Idle,
    /// Its last pass was answered and it is mid-generation: its next request is probably coming.
    Answered,
    Waiting(Request),
}

/// One sequence as the executor keeps it.
pub(super) struct Slot {
    /// What the sequence has cached, as it believes (plus the rows of its current request run so
    /// far). The cache holds the first `cache.len()` of them; the rest are recomputed first.
    pub(super) tokens: Vec<u32>,
    pub(super) cache: Option<KvCache>,
    /// Positions of pool memory the cache has written (its high-water mark; truncating keeps it).
    pub(super) touched: usize,
    pub(super) activity: Activity,
    /// When it last became busy after being idle: older sequences are served (and kept) first.
    pub(super) admitted: u64,
    /// The pass it last ran in (idle caches are dropped least recently used first).
    pub(super) last_pass: u64,
}

impl Slot {
    pub(super) fn cached(&self) -> usize {
        self.cache.as_ref().map_or(0, KvCache::len)
    }

    /// Rows still to run before its request is answered: recomputation, then the request's ids.
    pub(super) fn remaining(&self) -> usize {
        match &self.activity {
            Activity::Waiting(request) => {
                self.tokens.len() - self.cached() + request.ids.len() - request.done
            }
            _ => 0,
        }
    }

    /// Rows its next piece may hold at most: the recomputation its cache lacks, which must run
    /// alone (its logits are not the request's), else the request's ids left.
    pub(super) fn next_rows(&self) -> usize {
        match (&self.activity, self.tokens.len() - self.cached()) {
            (Activity::Waiting(request), 0) => request.ids.len() - request.done,
            (_, missing) => missing,
        }
    }
}

/// One sequence's rows in a pass.
pub(super) struct Piece {
    pub(super) sequence: u64,
    pub(super) ids: Vec<u32>,
    /// Rows of the request (false: positions recomputed, their logits unused).
    pub(super) of_request: bool,
    pub(super) all_logits: bool,
}
