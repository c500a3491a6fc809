//! Prompt-lookup speculation: drafts of the next tokens looked up in the prompt and the output so far.
//! An agent's answer copies from its context (tool results, file contents, the question); where the
//! last few tokens occurred before, the tokens that followed them there are a cheap guess at what comes
//! next. The engine verifies a draft in one forward pass (`Engine::generate`), so a right guess yields
//! several tokens per weight read and a wrong one costs only the extra rows of that pass.

use crate::model::Device;
use serde::{Deserialize, Serialize};

/// Whether the engine drafts tokens to verify (`model.speculation` in YAML, `--speculation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speculation {
    /// One token per forward pass.
    #[default]
    Off,
    /// Drafts from n-gram matches in the prompt and output (`PromptLookup`).
    #[value(name = "prompt_lookup")]
    PromptLookup,
}

impl Speculation {
    /// The setting where none is given, decided per device by measurement (BENCHMARKS.md,
    /// "Prompt-lookup speculation"). CPU: off — on the demo model a verify pass costs close to a decode
    /// step per drafted token (its large-vocabulary lm_head dominates and is compute-bound): pure copies
    /// gained 1.08×, agent answers that quote a fetched page lost (0.82×). GPU: off — its multi-token forward
    /// dequantizes every weight per call, far more than a decode step.
    pub fn default_for(device: Device) -> Self {
        match device {
            Device::Cpu => Speculation::Off,
            Device::Cuda | Device::Auto => Speculation::Off,
        }
    }
}

/// The longest and shortest suffix looked up: three tokens pin a copy down; a single token is too weak
/// a clue (on the demo model's copy tasks 1-token matches cut the acceptance from 0.44 to 0.34 and made
/// speculation slower, BENCHMARKS.md).
const LONGEST_NGRAM: usize = 3;
const SHORTEST_NGRAM: usize = 2;
/// The most tokens one draft proposes: past ~8 rows the CPU's verify step costs more than the
/// tokens a long copy saves (BENCHMARKS.md has the cost per k).
pub const MAX_DRAFT: usize = 8;
const FIRST_DRAFT: usize = 4;

/// The drafter of one generation: the lookup, and the draft length it adapts to how drafts fare.
#[derive(Debug, Clone)]
pub struct PromptLookup {
    k: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        PromptLookup { k: FIRST_DRAFT }
    }
}

impl PromptLookup {
    /// The draft length the next draft may take.
    pub fn draft_len(&self) -> usize {
        self.k
    }

    /// Up to `min(draft_len, limit)` tokens to follow `prompt` + `output`: the longest suffix of
    /// `LONGEST_NGRAM` (3) down to `SHORTEST_NGRAM` (2) tokens that occurred earlier, at its most recent earlier
    /// occurrence, and the tokens that followed it there. Empty when nothing matches.
    pub fn draft(&self, prompt: &[u32], output: &[u32], limit: usize) -> Vec<u32> {
        let len = prompt.len() + output.len();
        let at = |i: usize| match prompt.get(i) {
            Some(&id) => id,
            None => output[i - prompt.len()],
        };
        let want = self.k.min(limit);
        if want == 0 {
            return Vec::new();
        }
        for n in (SHORTEST_NGRAM..=LONGEST_NGRAM.min(len.saturating_sub(1))).rev() {
            let suffix = len - n;
            // An occurrence starting at `start` ends before the suffix's own last token, so at least
            // one token follows it.
            let found = (0..suffix)
                .rev()
                .find(|&start| (0..n).all(|j| at(start + j) == at(suffix + j)));
            if let Some(start) = found {
                let from = start + n;
                return (from..(from + want).min(len)).map(at).collect();
            }
        }
        Vec::new()
    }

    /// Adapts the draft length to a verified draft of `drafted` tokens of which the first `accepted`
    /// were right: doubles it after a fully accepted draft (up to `MAX_DRAFT`), and shrinks it to one
    /// past the accepted run otherwise, so a copy runs on in long drafts and free text costs little.
    pub fn update(&mut self, drafted: usize, accepted: usize) {
        self.k = if accepted >= drafted {
            (self.k * 2).min(MAX_DRAFT)
        } else {
            (accepted + 1).min(MAX_DRAFT)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_follow_the_longest_most_recent_match() {
        let lookup = PromptLookup::default();
        // Suffix [1, 2, 3] occurs at 0 (followed by 4 5 6 7) — the 3-gram wins over the more recent
        // 2-gram [2, 3] at 8 (followed by 9).
        let prompt = [1, 2, 3, 4, 5, 6, 7, 2, 3, 9, 1, 2];
        assert_eq!(lookup.draft(&prompt, &[3], 10), [4, 5, 6, 7]);
        // Two occurrences of [5, 6]: the later one (followed by 8, not 7).
        assert_eq!(
            lookup.draft(&[5, 6, 7, 5, 6, 8, 0], &[5, 6], 10),
            [8, 0, 5, 6]
        );
        // Only a 1-gram matches: no draft.
        assert!(lookup.draft(&[7, 8, 9], &[8], 10).is_empty());
        // The continuation runs into the output itself.
        assert_eq!(lookup.draft(&[4, 4], &[4], 10), [4]);
    }

    #[test]
    fn drafts_respect_the_limit_and_need_a_match() {
        let lookup = PromptLookup::default();
        assert_eq!(lookup.draft(&[1, 2, 3, 4, 5, 6, 1, 2], &[], 2), [3, 4]);
        assert!(lookup.draft(&[1, 2, 3, 4, 5, 6, 1, 2], &[], 0).is_empty());
        assert!(lookup.draft(&[1, 2, 3], &[4], 8).is_empty());
        assert!(lookup.draft(&[1], &[], 8).is_empty());
        assert!(lookup.draft(&[], &[], 8).is_empty());
    }

    #[test]
    fn the_draft_length_grows_on_full_acceptance_and_shrinks_on_rejection() {
        let mut lookup = PromptLookup::default();
        assert_eq!(lookup.draft_len(), FIRST_DRAFT);
        lookup.update(4, 4);
        assert_eq!(lookup.draft_len(), 8);
        lookup.update(8, 8);
        assert_eq!(lookup.draft_len(), MAX_DRAFT);
        lookup.update(8, 2);
        assert_eq!(lookup.draft_len(), 3);
        lookup.update(3, 0);
        assert_eq!(lookup.draft_len(), 1);
        lookup.update(1, 1);
        assert_eq!(lookup.draft_len(), 2);
        // A draft cut short by the limit counts as fully accepted when all of it was right.
        lookup.update(1, 1);
        assert_eq!(lookup.draft_len(), 4);
    }

    #[test]
    fn the_default_is_off_on_every_device_as_measured() {
        for device in [Device::Cpu, Device::Cuda, Device::Auto] {
            assert_eq!(Speculation::default_for(device), Speculation::Off);
        }
    }
}
