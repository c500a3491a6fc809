//! The decode loop with a decoder that selects candidates itself (`Decoder::forward_top_k`), emulated
//! on the CPU the way the CUDA engine does it: the same ids as host sampling, with the counted tokens
//! kept step by step between requests.

use super::sampler::tests::device_candidates;
use super::*;
use crate::model::config::Qwen3Config;
use crate::model::{Precision, load_dir};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

/// The CPU engine plus per-token marks kept across steps as a device keeps them.
struct Selecting {
    inner: CpuDecoder,
    marks: Vec<u8>,
    /// Requests above this k are refused (the CUDA engine's cap).
    max_k: usize,
    /// Refuse every `refuse_every`-th request (0: never), as a decoder that cannot serve some steps.
    refuse_every: usize,
    requests: usize,
    served: Arc<AtomicUsize>,
}

fn marks_of(vocab: usize, prompt: &[u32], generated: &[u32]) -> Vec<u8> {
    let mut marks = vec![0u8; vocab];
    prompt.iter().for_each(|&id| marks[id as usize] |= 1);
    generated.iter().for_each(|&id| marks[id as usize] |= 3);
    marks
}

impl Decoder for Selecting {
    fn config(&self) -> &Qwen3Config {
        self.inner.config()
    }
    fn cached_tokens(&self) -> &[u32] {
        self.inner.cached_tokens()
    }
    fn truncate_cache(&mut self, len: usize) {
        self.inner.truncate_cache(len)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        self.inner.forward(ids, all_logits)
    }
    fn forward_top_k(&mut self, id: u32, r: &TopKRequest) -> Result<Option<Vec<(u32, f32)>>> {
        self.requests += 1;
        if r.k > self.max_k
            || (self.refuse_every > 0 && self.requests.is_multiple_of(self.refuse_every))
        {
            return Ok(None);
        }
        assert_eq!(
            r.generated.last(),
            Some(&id),
            "the output ends with the id run"
        );
        let vocab = self.marks.len();
        if r.fresh {
            self.marks = marks_of(vocab, r.prompt, r.generated);
        } else {
            self.marks[id as usize] |= 3;
            assert!(
                self.marks == marks_of(vocab, r.prompt, r.generated),
                "marks kept step by step must count what the request counts"
            );
        }
        let logits = self.inner.forward(&[id], false)?;
        self.served.fetch_add(1, Ordering::Relaxed);
        let penalties = (r.repetition_penalty, r.presence_penalty);
        Ok(Some(device_candidates(
            &logits,
            &self.marks,
            penalties,
            r.k,
        )))
    }
}

fn model() -> Qwen3 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity/awq-untied-gqa");
    load_dir(&dir, Precision::Exact, None, |_, _| {}).expect("the parity fixture loads")
}

/// A plain CPU engine and one whose decoder selects candidates, and how many requests it served.
fn engines(max_k: usize, refuse_every: usize) -> (Engine, Engine, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let inner = CpuDecoder::new(model(), 256);
    let selecting = Selecting {
        marks: vec![0; inner.config().vocab_size],
        inner,
        max_k,
        refuse_every,
        requests: 0,
        served: served.clone(),
    };
    let selecting = Engine::from_decoder(Box::new(selecting));
    (Engine::new(model(), 256), selecting, served)
}

/// The ids generated, and how many the decoder picked (`Timings::device_picked_tokens`).
fn generate(engine: &mut Engine, prompt: &[u32], params: SamplingParams) -> (Vec<u32>, usize) {
    let generation = engine.generate(prompt, 40, params, &[], None, |_| ControlFlow::Continue(()));
    let generation = generation.expect("generation runs");
    (
        generation.token_ids,
        generation.timings.device_picked_tokens,
    )
}

fn ids(engine: &mut Engine, prompt: &[u32], params: SamplingParams) -> Vec<u32> {
    generate(engine, prompt, params).0
}

fn settings() -> [SamplingParams; 4] {
    let thinking = SamplingParams::for_mode(true);
    [
        thinking,
        SamplingParams {
            presence_penalty: 1.5,
            seed: 4,
            ..thinking
        },
        SamplingParams {
            repetition_penalty: 1.3,
            min_p: 0.05,
            top_k: 64,
            seed: 9,
            ..thinking
        },
        SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.2,
            ..thinking
        },
    ]
}

#[test]
fn selected_candidates_give_the_host_samplers_ids() {
    let prompt: Vec<u32> = (0..24).map(|i| (i * 37 % 500) as u32).collect();
    for params in settings() {
        let (mut host, mut device, served) = engines(64, 0);
        let expected = ids(&mut host, &prompt, params);
        let (got, picked) = generate(&mut device, &prompt, params);
        assert_eq!(got, expected, "{params:?}");
        // Every step after the first (which samples the prefill's logits) came from candidates.
        assert_eq!(served.load(Ordering::Relaxed), expected.len() - 1);
        assert_eq!(picked, expected.len() - 1);
        // A second round reuses the cached prefix; its first request starts the counted tokens afresh.
        let longer: Vec<u32> = prompt.iter().chain(&expected).copied().collect();
        let expected = ids(&mut host, &longer, params);
        assert_eq!(
            ids(&mut device, &longer, params),
            expected,
            "{params:?}, round 2"
        );
    }
}

#[test]
fn refused_requests_fall_back_to_host_sampling() {
    let prompt: Vec<u32> = (0..16).map(|i| (i * 11 % 500) as u32).collect();
    let params = settings()[2];
    // k 64 over a cap of 20: never served, every step samples the downloaded logits.
    let (mut host, mut device, served) = engines(20, 0);
    assert_eq!(
        ids(&mut device, &prompt, params),
        ids(&mut host, &prompt, params)
    );
    assert_eq!(served.load(Ordering::Relaxed), 0);
    // Some steps refused: the request after one starts afresh, and the ids stay the host's.
    let (mut host, mut device, served) = engines(64, 3);
    assert_eq!(
        ids(&mut device, &prompt, params),
        ids(&mut host, &prompt, params)
    );
    assert!(served.load(Ordering::Relaxed) > 20);
}

/// With a constraint every token is drawn on the host from the masked full logits: the decoder is
/// never asked to pick (it could not know the mask), and the output follows the grammar.
#[test]
fn a_constraint_keeps_decoding_on_the_masked_host_path() {
    use crate::chat::{AnswerFormat, Tokenizer};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let tokenizer = Tokenizer::from_model_dir(&dir).unwrap();
    let grammars = Grammars::new(&tokenizer, 0, &[151645]).unwrap();
    // One digit in brackets: every byte the grammar forces is a token of the fixture's 512.
    let schema = serde_json::json!({"type": "array", "minItems": 1, "maxItems": 1,
                                    "items": {"type": "integer", "minimum": 0, "maximum": 9}});
    let grammar = AnswerFormat::Json(Some(schema)).grammar(false);
    let close = tokenizer.token_id("]").unwrap();
    let prompt: Vec<u32> = (0..16).map(|i| (i * 13 % 500) as u32).collect();
    for params in [settings()[0], settings()[3]] {
        let (_, mut device, served) = engines(64, 0);
        let mut constraint = grammars.constraint(&grammar).unwrap();
        // The fixture's 512-token vocabulary has no end-of-turn token: stop at the closing bracket.
        let generation = device
            .generate(&prompt, 40, params, &[], Some(&mut constraint), |id| {
                if id == close {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(served.load(Ordering::Relaxed), 0, "{params:?}");
        assert_eq!(generation.timings.device_picked_tokens, 0);
        let text = tokenizer.decode(&generation.token_ids).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(value[0].as_u64().is_some_and(|d| d <= 9), "{text}");
    }
}

/// Recording logprobs reads every token's full logits on the host: the decoder is never asked to pick
/// and speculation is skipped, the ids stay the host sampler's, and each emitted token (never the stop
/// id that ends the output) is reported once, in order, with the raw logits' log-softmax.
#[test]
fn logprobs_are_reported_per_emitted_token_from_the_raw_logits() {
    let prompt: Vec<u32> = (0..20).map(|i| (i * 29 % 500) as u32).collect();
    for params in settings() {
        let (mut host, mut device, served) = engines(64, 0);
        let expected = ids(&mut host, &prompt, params);
        // Stop on the 6th token's id: the output ends before its first occurrence.
        let stop = expected[5];
        let emitted = expected.iter().take_while(|&&id| id != stop).count();
        let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = reported.clone();
        device.set_logprobs(Some((
            3,
            Box::new(move |t: TokenLogprobs| sink.lock().unwrap().push(t)),
        )));
        device.set_speculation(Speculation::PromptLookup);
        let generation = device
            .generate(&prompt, 40, params, &[stop], None, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(generation.token_ids, expected[..emitted], "{params:?}");
        assert_eq!(served.load(Ordering::Relaxed), 0, "{params:?}");
        assert_eq!(generation.timings.verify_steps, 0, "{params:?}");
        let reported = std::mem::take(&mut *reported.lock().unwrap());
        let ids: Vec<u32> = reported.iter().map(|t| t.id).collect();
        assert_eq!(ids, generation.token_ids, "{params:?}");
        // The raw logits after each prefix, recomputed: the same numbers, before any penalty.
        let mut fresh = Engine::new(model(), 256);
        for (n, token) in reported.iter().enumerate() {
            let context: Vec<u32> = prompt.iter().chain(&ids[..n]).copied().collect();
            let logits = fresh.prefill(&context, &mut Timings::default()).unwrap();
            assert_eq!(*token, sampler::token_logprobs(&logits, token.id, 3));
            assert!(token.logprob <= 0.0 && token.top.len() == 3);
        }
        device.set_logprobs(None);
        let again = device
            .generate(&prompt, 8, params, &[], None, |_| ControlFlow::Continue(()))
            .unwrap();
        assert!(
            again.timings.device_picked_tokens > 0,
            "picking resumes: {params:?}"
        );
    }
}
