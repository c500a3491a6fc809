//! The agent assembly hands a local model's engine the caller's prefill reporter, so `run`, `chat`
//! and `eval` can draw a long prompt's prefill (minutes on a CPU) as a bar.

use qwen3_agent::agent::assemble::{AssembleOptions, build_backend};
use qwen3_agent::backend::{BackendRequest, CallParsing};
use qwen3_agent::chat::Message;
use qwen3_agent::config::load_agent;
use qwen3_agent::engine::{PREFILL_STEP, PrefillProgress, SamplingParams};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

/// What the reporter was told, in order (a `fn` pointer cannot capture, hence the static).
static REPORTS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn recording() -> PrefillProgress {
    Box::new(|done, total| REPORTS.lock().unwrap().push((done, total)))
}

#[test]
fn a_local_models_prefill_reaches_the_callers_reporter() {
    let agent = load_agent(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/agents/demo.yaml"
    )))
    .unwrap();
    let mut options = AssembleOptions::new(std::env::temp_dir().join("qwen3-agent-assembly-test"));
    options.prefill_progress = Some(recording);
    let mut backend = build_backend(&agent, &options).unwrap();
    let messages = [Message::user(
        "count the words: ".to_string() + &"word ".repeat(700),
    )];
    let request = BackendRequest {
        messages: &messages,
        tools: &[],
        thinking: false,
        sampling: SamplingParams::greedy(),
        max_new_tokens: 1,
        stop: &[],
        interrupt: &AtomicBool::new(false),
        calls: CallParsing::Calls,
        format: None,
        logprobs: None,
    };
    let response = backend.complete(&request, &mut |_| {}).unwrap();

    let reports = REPORTS.lock().unwrap();
    let prompt = response.prompt_tokens;
    assert!(
        prompt > PREFILL_STEP,
        "the prompt must take more than one step: {prompt}"
    );
    assert_eq!(reports.first(), Some(&(0, prompt)), "{reports:?}");
    assert_eq!(reports.last(), Some(&(prompt, prompt)), "{reports:?}");
    assert_eq!(
        reports.len(),
        1 + prompt.div_ceil(PREFILL_STEP),
        "{reports:?}"
    );
}
