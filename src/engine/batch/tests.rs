//! Batched sequences against the same sequences run one at a time on the CPU engine: the ids must be
//! identical (greedy and seeded), whatever the passes mixed, split or recomputed.

use super::*;
use crate::engine::{Engine, SamplingParams, Speculation};
use crate::model::{Precision, load_dir};
use std::ops::ControlFlow;
use std::sync::Barrier;

fn parity_model() -> Qwen3 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/awq-untied-gqa");
    load_dir(&dir, Precision::Fast, None, |_, _| {}).expect("the parity fixture loads")
}

/// Prompts of different lengths (some longer than a pass, so they are read in pieces) and settings.
fn cases() -> Vec<(Vec<u32>, SamplingParams)> {
    let thinking = SamplingParams::for_mode(true);
    (0..4u32)
        .map(|i| {
            let prompt: Vec<u32> = (0..(9 + 13 * i)).map(|j| (j * 31 + i * 7) % 500).collect();
            let params = if i % 2 == 0 {
                SamplingParams::greedy()
            } else {
                SamplingParams {
                    seed: u64::from(i),
                    presence_penalty: 0.5,
                    ..thinking
                }
            };
            (prompt, params)
        })
        .collect()
}

const NEW_TOKENS: usize = 20;

fn sequential(cases: &[(Vec<u32>, SamplingParams)]) -> Vec<Vec<u32>> {
    cases
        .iter()
        .map(|(prompt, params)| {
            let mut engine = Engine::new(parity_model(), 128);
            engine
                .generate(prompt, NEW_TOKENS, *params, &[], None, |_| {
                    ControlFlow::Continue(())
                })
                .expect("sequential generation")
                .token_ids
        })
        .collect()
}

/// Runs every case on its own thread and engine, all sharing `batcher`, `rounds` times each (a
/// sequence's later rounds reuse or recompute its cache).
fn batched(
    batcher: &Arc<Batcher>,
    cases: &[(Vec<u32>, SamplingParams)],
    speculation: Speculation,
    rounds: usize,
) -> Vec<Vec<Vec<u32>>> {
    let start = Barrier::new(cases.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(prompt, params)| {
                let start = &start;
                scope.spawn(move || {
                    let mut engine = Engine::from_decoder(Box::new(batcher.sequence()));
                    engine.set_speculation(speculation);
                    start.wait();
                    (0..rounds)
                        .map(|_| {
                            engine
                                .generate(prompt, NEW_TOKENS, *params, &[], None, |_| {
                                    ControlFlow::Continue(())
                                })
                                .expect("batched generation")
                                .token_ids
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    })
}

fn options(pool_positions: usize) -> BatchOptions {
    BatchOptions {
        context_length: 128,
        step_tokens: 16,
        pool_positions,
    }
}

#[test]
fn batched_sequences_give_the_ids_of_sequential_runs() {
    let cases = cases();
    let expected = sequential(&cases);
    let batcher = Batcher::start(parity_model(), options(4 * 128)).expect("starts");
    let runs = batched(&batcher, &cases, Speculation::Off, 2);
    for (runs, expected) in runs.iter().zip(&expected) {
        for ids in runs {
            assert_eq!(ids, expected);
        }
    }
    let stats = batcher.stats();
    assert!(
        stats.max_sequences.load(Ordering::Relaxed) >= 2,
        "no pass ran two sequences together"
    );
    assert_eq!(stats.preemptions.load(Ordering::Relaxed), 0);
    assert_eq!(stats.recomputed.load(Ordering::Relaxed), 0);
}

#[test]
fn a_full_pool_preempts_and_recomputes_without_changing_any_id() {
    let cases = cases();
    let expected = sequential(&cases);
    // Room for one long sequence at a time: the others are preempted and recomputed.
    let batcher = Batcher::start(parity_model(), options(64)).expect("starts");
    let runs = batched(&batcher, &cases, Speculation::Off, 2);
    for (runs, expected) in runs.iter().zip(&expected) {
        for ids in runs {
            assert_eq!(ids, expected);
        }
    }
    let stats = batcher.stats();
    let dropped =
        stats.preemptions.load(Ordering::Relaxed) + stats.evictions.load(Ordering::Relaxed);
    assert!(dropped > 0, "the pool never ran out");
    assert!(stats.recomputed.load(Ordering::Relaxed) > 0);
}

#[test]
fn speculation_through_a_batch_gives_the_same_ids() {
    // Prompts that repeat themselves, so drafts come up and rejected ones truncate the cache.
    let cases: Vec<_> = cases()
        .into_iter()
        .map(|(prompt, params)| {
            let repeated: Vec<u32> = prompt
                .iter()
                .cycle()
                .take(prompt.len() * 2)
                .copied()
                .collect();
            (repeated, params)
        })
        .collect();
    let expected = sequential(&cases);
    let batcher = Batcher::start(parity_model(), options(4 * 128)).expect("starts");
    let runs = batched(&batcher, &cases, Speculation::PromptLookup, 1);
    for (runs, expected) in runs.iter().zip(&expected) {
        assert_eq!(&runs[0], expected);
    }
}

#[test]
fn a_bad_request_fails_alone() {
    let batcher = Batcher::start(parity_model(), options(4 * 128)).expect("starts");
    let mut bad = batcher.sequence();
    let error = bad.forward(&[1, 2, 1_000_000], false).unwrap_err();
    assert!(
        error.to_string().contains("outside the vocabulary"),
        "{error}"
    );
    assert!(bad.cached_tokens().is_empty());
    let too_long = vec![1u32; 129];
    let error = bad.forward(&too_long, false).unwrap_err();
    assert!(error.to_string().contains("context is full"), "{error}");
    let mut good = batcher.sequence();
    let logits = good.forward(&[1, 2, 3], true).expect("a good request runs");
    assert_eq!(logits.len(), 3 * good.config().vocab_size);
    assert_eq!(good.cached_tokens(), &[1, 2, 3]);
    // The failed sequence still works afterwards.
    bad.forward(&[4, 5], false).expect("runs after its errors");
    assert_eq!(bad.cached_tokens(), &[4, 5]);
}

#[test]
fn a_sequence_takes_over_an_idle_cache_that_holds_its_prompt() {
    let (prompt, params) = cases().swap_remove(3);
    let longer: Vec<u32> = prompt.iter().chain(&[7, 8, 9]).copied().collect();
    let expected = sequential(&[(prompt.clone(), params), (longer.clone(), params)]);
    let batcher = Batcher::start(parity_model(), options(4 * 128)).expect("starts");
    let generate = |engine: &mut Engine, prompt: &[u32]| {
        engine
            .generate(prompt, NEW_TOKENS, params, &[], None, |_| {
                ControlFlow::Continue(())
            })
            .expect("generation")
    };
    let mut first = Engine::from_decoder(Box::new(batcher.sequence()));
    let mut second = Engine::from_decoder(Box::new(batcher.sequence()));
    assert_eq!(generate(&mut first, &prompt).token_ids, expected[0]);
    // The conversation goes on in another engine (a server's next request on another thread).
    let continued = generate(&mut second, &longer);
    assert_eq!(continued.token_ids, expected[1]);
    assert_eq!(continued.timings.reused_tokens, prompt.len());
    assert_eq!(
        batcher.stats().adopted.load(Ordering::Relaxed),
        prompt.len() as u64
    );
    // The first engine was left the second's empty cache: it takes the prompt back from the second
    // (the whole prompt but its last token, whose logits are not cached) and answers as before.
    let again = generate(&mut first, &prompt);
    assert_eq!(again.token_ids, expected[0]);
    assert_eq!(again.timings.reused_tokens, prompt.len() - 1);
}

#[test]
fn sequences_sharing_a_prefix_take_over_caches_without_mixing_them() {
    // One long shared prefix (a system prompt) and different questions; each round every engine asks
    // the question another engine asked the round before, all at once, so each may take over the
    // idle cache holding its question — and must never take one another engine is using.
    let shared: Vec<u32> = (0..40).map(|j| (j * 13 + 5) % 500).collect();
    let cases: Vec<_> = cases()
        .into_iter()
        .map(|(prompt, params)| {
            let question = prompt.iter().rev().take(6).copied();
            (
                shared.iter().copied().chain(question).collect::<Vec<u32>>(),
                params,
            )
        })
        .collect();
    let expected = sequential(&cases);
    let batcher = Batcher::start(parity_model(), options(4 * 128)).expect("starts");
    let round_start = Barrier::new(cases.len());
    std::thread::scope(|scope| {
        for engine_index in 0..cases.len() {
            let (batcher, cases, expected, round_start) =
                (&batcher, &cases, &expected, &round_start);
            scope.spawn(move || {
                let mut engine = Engine::from_decoder(Box::new(batcher.sequence()));
                for round in 0..4 {
                    let case = (engine_index + round) % cases.len();
                    let (prompt, params) = &cases[case];
                    round_start.wait();
                    let ids = engine
                        .generate(prompt, NEW_TOKENS, *params, &[], None, |_| {
                            ControlFlow::Continue(())
                        })
                        .expect("batched generation")
                        .token_ids;
                    assert_eq!(ids, expected[case], "round {round}");
                }
            });
        }
    });
    assert!(batcher.stats().adopted.load(Ordering::Relaxed) > 0);
}
