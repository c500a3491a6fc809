//! Speculative decoding against sequential decoding: a scripted decoder whose every next token is
//! known (so drafts are accepted or rejected where a test wants), and the CPU engine on the parity
//! fixture (whose multi-token pass gives each row the logits of one-token passes).

use super::*;
use crate::model::config::Qwen3Config;
use crate::model::{Precision, load_dir};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

const VOCAB: usize = 64;
const STOP: u32 = 3;

/// A model that continues `text`: the logits after position p put all weight on `text[p + 1]` when
/// the cached tokens up to p are `text`'s, and on token 0 otherwise (so a row computed after a wrong
/// draft, or over a cache left stale, gives a token the script does not have). Overflowing the
/// capacity fails as the real engines do.
struct Scripted {
    config: Qwen3Config,
    text: Vec<u32>,
    cache: Vec<u32>,
    capacity: usize,
    forwards: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(text: &[u32], capacity: usize, forwards: Arc<AtomicUsize>) -> Self {
        let config = serde_json::from_value(serde_json::json!({
            "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 1, "num_key_value_heads": 1, "vocab_size": VOCAB,
        }))
        .expect("a valid config");
        Scripted {
            config,
            text: text.to_vec(),
            cache: Vec::new(),
            capacity,
            forwards,
        }
    }

    fn row(&self, p: usize) -> Vec<f32> {
        let right = self.cache[..=p] == self.text[..=p.min(self.text.len() - 1)];
        let next = match self.text.get(p + 1) {
            Some(&id) if right => id as usize,
            _ => 0,
        };
        let mut row = vec![0.0; VOCAB];
        row[next] = 10.0;
        row
    }
}

impl Decoder for Scripted {
    fn config(&self) -> &Qwen3Config {
        &self.config
    }
    fn cached_tokens(&self) -> &[u32] {
        &self.cache
    }
    fn truncate_cache(&mut self, len: usize) {
        self.cache.truncate(len);
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        anyhow::ensure!(
            self.cache.len() + ids.len() <= self.capacity,
            "the context is full"
        );
        self.forwards.fetch_add(1, Ordering::Relaxed);
        let start = self.cache.len();
        self.cache.extend_from_slice(ids);
        let rows = if all_logits {
            start..self.cache.len()
        } else {
            self.cache.len() - 1..self.cache.len()
        };
        Ok(rows.flat_map(|p| self.row(p)).collect())
    }
}

/// A copy task: the prompt quotes a passage (with the stop id inside it), and the model repeats it.
fn copy_task() -> (Vec<u32>, Vec<u32>) {
    let passage: Vec<u32> = (10..40).chain([STOP]).chain(40..50).collect();
    let prompt: Vec<u32> = [1, 2]
        .iter()
        .chain(&passage)
        .chain(&[5, 6])
        .copied()
        .collect();
    let text = prompt.iter().chain(&passage).copied().collect();
    (prompt, text)
}

struct Run {
    ids: Vec<u32>,
    finish: FinishReason,
    timings: Timings,
    forwards: usize,
}

fn run(
    speculation: Speculation,
    text: &[u32],
    prompt: &[u32],
    capacity: usize,
    max_new_tokens: usize,
    break_after: usize,
) -> Run {
    let forwards = Arc::new(AtomicUsize::new(0));
    let scripted = Scripted::new(text, capacity, forwards.clone());
    let mut engine = Engine::from_decoder(Box::new(scripted));
    engine.set_speculation(speculation);
    let mut seen = 0;
    let generation = engine
        .generate(
            prompt,
            max_new_tokens,
            SamplingParams::greedy(),
            &[STOP],
            None,
            |_| {
                seen += 1;
                if seen == break_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .expect("generation runs");
    Run {
        ids: generation.token_ids,
        finish: generation.finish_reason,
        timings: generation.timings,
        forwards: forwards.load(Ordering::Relaxed),
    }
}

/// Runs a task without and with speculation; the ids and the finish must agree.
fn both(
    text: &[u32],
    prompt: &[u32],
    capacity: usize,
    max_new_tokens: usize,
    break_after: usize,
) -> (Run, Run) {
    let plain = run(
        Speculation::Off,
        text,
        prompt,
        capacity,
        max_new_tokens,
        break_after,
    );
    let fast = run(
        Speculation::PromptLookup,
        text,
        prompt,
        capacity,
        max_new_tokens,
        break_after,
    );
    assert_eq!(fast.ids, plain.ids);
    assert_eq!(fast.finish, plain.finish);
    assert_eq!(plain.timings.verify_steps, 0);
    (plain, fast)
}

#[test]
fn a_copy_is_verified_several_tokens_per_pass_and_stops_at_a_stop_id_inside_a_draft() {
    let (prompt, text) = copy_task();
    let (plain, fast) = both(&text, &prompt, 256, 100, 0);
    // The passage up to the stop id, which ends generation unemitted though the draft held it.
    assert_eq!(plain.ids, (10..40).collect::<Vec<_>>());
    assert_eq!(plain.finish, FinishReason::Stop);
    let t = &fast.timings;
    assert!(t.verify_steps > 0 && t.accepted_tokens > 20, "{t:?}");
    assert!(
        fast.forwards < plain.forwards / 2,
        "{} vs {}",
        fast.forwards,
        plain.forwards
    );
}

#[test]
fn rejected_drafts_leave_the_sequential_ids() {
    // The model copies the passage but changes two tokens (and then goes on differently): drafts
    // from the prompt's copy are rejected there and the positions they ran are dropped.
    let (prompt, _) = copy_task();
    let mut answer: Vec<u32> = (10..40).collect();
    answer[7] = 60;
    answer[19] = 61;
    answer.extend([20, 21, 22, 20, 21, 22, 20]);
    let text: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
    let (plain, fast) = both(&text, &prompt, 256, answer.len(), 0);
    assert_eq!(plain.ids, answer);
    assert_eq!(plain.finish, FinishReason::Length);
    let t = &fast.timings;
    assert!(t.accepted_tokens < t.drafted_tokens, "{t:?}");
    assert!(t.accepted_tokens > 15, "{t:?}");
}

#[test]
fn max_new_tokens_cuts_inside_a_draft() {
    let (prompt, text) = copy_task();
    for max in [1, 2, 5, 7, 12] {
        let (plain, fast) = both(&text, &prompt, 256, max, 0);
        assert_eq!(plain.ids, (10..10 + max as u32).collect::<Vec<_>>());
        assert_eq!(fast.finish, FinishReason::Length);
        // Drafts never run past the last token wanted.
        assert!(fast.timings.drafted_tokens <= max, "{:?}", fast.timings);
    }
}

#[test]
fn a_nearly_full_context_ends_the_output_without_overflowing() {
    let (prompt, text) = copy_task();
    for room in [1, 2, 3, 6, 9] {
        let (plain, fast) = both(&text, &prompt, prompt.len() + room, 100, 0);
        assert_eq!(plain.ids.len(), room);
        assert_eq!(fast.finish, FinishReason::Length);
    }
}

#[test]
fn on_token_breaking_inside_a_draft_ends_there() {
    let (prompt, text) = copy_task();
    for at in [1, 3, 6, 13] {
        let (plain, fast) = both(&text, &prompt, 256, 100, at);
        assert_eq!(plain.ids.len(), at);
        assert_eq!(fast.finish, FinishReason::Stop);
    }
}

fn parity_model() -> Qwen3 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/awq-untied-gqa");
    load_dir(&dir, Precision::Fast, None, |_, _| {}).expect("the parity fixture loads")
}

#[test]
fn the_cpu_engine_gives_sequential_ids_greedy_and_seeded() {
    // A prompt that repeats itself, so drafts come up; penalties and seeds as agents use them.
    let phrase: Vec<u32> = (0..12).map(|i| (i * 37 % 500) as u32).collect();
    let prompt: Vec<u32> = phrase.iter().cycle().take(40).copied().collect();
    let thinking = SamplingParams::for_mode(true);
    let settings = [
        SamplingParams::greedy(),
        SamplingParams {
            seed: 4,
            ..thinking
        },
        SamplingParams {
            repetition_penalty: 1.1,
            presence_penalty: 0.3,
            min_p: 0.05,
            seed: 9,
            ..thinking
        },
    ];
    // Summed over the settings: a random model's sampled output may repeat nothing worth a draft
    // (the demo model's test in tests/demo_model.rs has drafts accepted under sampling too).
    let mut verified = 0;
    for params in settings {
        let mut ids = Vec::new();
        for speculation in [Speculation::Off, Speculation::PromptLookup] {
            let mut engine = Engine::new(parity_model(), 256);
            engine.set_speculation(speculation);
            let generation = engine
                .generate(
                    &prompt,
                    48,
                    params,
                    &[],
                    None,
                    |_| ControlFlow::Continue(()),
                )
                .expect("generation runs");
            verified += generation.timings.verify_steps;
            ids.push(generation.token_ids);
        }
        assert_eq!(ids[0], ids[1], "{params:?}");
    }
    assert!(verified > 0, "no draft was verified");
}
