//! The executor's decisions: which rows the next pass runs (waiting sequences oldest first, within
//! `step_tokens`), whose cache is dropped when the pool is full (idle ones least recently used, then
//! only sequences newer than the one that needs the room), and which idle cache a new prompt takes over.

use super::Executor;
use super::slot::{Activity, Piece, Slot};
use std::sync::atomic::Ordering;

impl Executor {
    /// Swaps `sequence`'s cache with the idle one holding the longest prefix of `prompt`, when that
    /// prefix is longer than what its own cache holds of it. The other sequence finds out at its
    /// own next prompt (it is idle, so nothing of its runs meanwhile).
    pub(super) fn adopt(&mut self, sequence: u64, prompt: &[u32]) {
        let resident = |slot: &Slot| {
            slot.tokens[..slot.cached()]
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let own = self.slot(sequence);
        let mine = resident(own);
        let best = self
            .slots
            .iter()
            .filter(|&(&other, slot)| other != sequence && matches!(slot.activity, Activity::Idle))
            .map(|(&other, slot)| (resident(slot), other))
            .max();
        if let Some((shared, other)) = best
            && shared > mine
        {
            let mut theirs = self.slots.remove(&other).expect("found above");
            let own = self.slots.get_mut(&sequence).expect("made above");
            std::mem::swap(&mut own.tokens, &mut theirs.tokens);
            std::mem::swap(&mut own.cache, &mut theirs.cache);
            std::mem::swap(&mut own.touched, &mut theirs.touched);
            self.slots.insert(other, theirs);
            self.stats
                .adopted
                .fetch_add(shared as u64, Ordering::Relaxed);
        }
    }

    /// The slot of `sequence`, made empty on its first message.
    pub(super) fn slot(&mut self, sequence: u64) -> &mut Slot {
        self.slots.entry(sequence).or_insert_with(|| Slot {
            tokens: Vec::new(),
            cache: None,
            touched: 0,
            activity: Activity::Idle,
            admitted: 0,
            last_pass: 0,
        })
    }

    /// The next pass's pieces: waiting sequences oldest first, each as many rows as the pass has
    /// room for, each given cache memory (dropping others' caches when the pool is full).
    pub(super) fn plan(&mut self) -> Vec<Piece> {
        let mut order: Vec<(u64, u64)> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.remaining() > 0)
            .map(|(&sequence, slot)| (slot.admitted, sequence))
            .collect();
        order.sort_unstable();
        let mut budget = self.options.step_tokens;
        let mut planned: Vec<u64> = Vec::new();
        let mut pieces = Vec::new();
        for (_, sequence) in order {
            if budget == 0 {
                break;
            }
            let slot = &self.slots[&sequence];
            let take = slot.next_rows().min(budget);
            let (needed, admitted) = (
                (slot.cached() + take).saturating_sub(slot.touched),
                slot.admitted,
            );
            planned.push(sequence);
            if !self.make_room(needed, &planned, admitted) {
                planned.pop();
                break;
            }
            budget -= take;
            pieces.push(self.piece(sequence, take, needed));
        }
        pieces
    }

    /// Drops caches until `needed` more positions fit the pool: idle sequences' least recently used
    /// first, then the newest busy sequences' admitted after `admitted` (an older one is never
    /// preempted for a newer one, so two sequences cannot take turns recomputing), never those in
    /// `keep`. False when nothing is left to drop: the request waits for an older one to finish.
    pub(super) fn make_room(&mut self, needed: usize, keep: &[u64], admitted: u64) -> bool {
        while self.pool_used + needed > self.options.pool_positions {
            let victim = self
                .slots
                .iter()
                .filter(|(sequence, slot)| {
                    slot.touched > 0
                        && !keep.contains(sequence)
                        && (matches!(slot.activity, Activity::Idle) || slot.admitted > admitted)
                })
                .max_by_key(|(_, slot)| match slot.activity {
                    Activity::Idle => (1, u64::MAX - slot.last_pass),
                    _ => (0, slot.admitted),
                })
                .map(|(&sequence, _)| sequence);
            let Some(victim) = victim else {
                return false;
            };
            let slot = self.slots.get_mut(&victim).expect("chosen from the slots");
            let counter = match slot.activity {
                Activity::Idle => &self.stats.evictions,
                _ => &self.stats.preemptions,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            self.pool_used -= slot.touched;
            slot.touched = 0;
            slot.cache = None;
        }
        true
    }

    /// `take` rows of a waiting sequence: the recomputation its cache lacks first, else its request's
    /// next ids. `needed` positions of the pool are now its.
    pub(super) fn piece(&mut self, sequence: u64, take: usize, needed: usize) -> Piece {
        let capacity = self.options.context_length;
        let model = &self.model;
        let slot = self.slots.get_mut(&sequence).expect("planned slot");
        slot.touched += needed;
        self.pool_used += needed;
        let cache = slot.cache.get_or_insert_with(|| model.new_cache(capacity));
        let cached = cache.len();
        if cached < slot.tokens.len() {
            return Piece {
                sequence,
                ids: slot.tokens[cached..cached + take].to_vec(),
                of_request: false,
                all_logits: false,
            };
        }
        let Activity::Waiting(request) = &slot.activity else {
            unreachable!("only waiting sequences are planned");
        };
        Piece {
            sequence,
            ids: request.ids[request.done..request.done + take].to_vec(),
            of_request: true,
            all_logits: request.all_logits,
        }
    }
}
