//! Parity with transformers' Qwen3ForCausalLM (fp32, eager attention) on the committed tiny checkpoints:
//! AWQ untied + GQA + head_dim ≠ hidden/heads, AWQ tied, AWQ with YaRN, and a dense bf16 checkpoint.
//! References were produced by scripts/parity_reference.py (see tests/fixtures/parity/*/ref.json).

use qwen3_agent::engine::{Engine, SamplingParams};
use qwen3_agent::model::{Precision, load_dir, npy};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 4);
    dirs
}

fn reference(dir: &Path) -> (Vec<u32>, Vec<u32>) {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ref.json")).unwrap()).unwrap();
    (
        serde_json::from_value(r["ids"].clone()).unwrap(),
        serde_json::from_value(r["greedy_ids"].clone()).unwrap(),
    )
}

#[test]
fn logits_match_transformers() {
    for dir in fixtures() {
        let model = load_dir(&dir, Precision::Exact, None, |_, _| {}).unwrap();
        let (ids, _) = reference(&dir);
        let mut cache = model.new_cache(ids.len());
        let ours = model.forward(&ids, &mut cache, true).unwrap();
        let (shape, theirs) = npy::read_f32(&dir.join("ref_logits.npy")).unwrap();
        assert_eq!(shape, vec![ids.len(), model.config.vocab_size]);
        let rel = relative_error(&ours, &theirs);
        eprintln!("{}: relative error {rel:.2e}", dir.display());
        assert!(
            rel < 1e-5,
            "{}: relative error {rel:.3e} ≥ 1e-5",
            dir.display()
        );
    }
}

fn relative_error(ours: &[f32], theirs: &[f32]) -> f64 {
    let diff: f64 = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / theirs
        .iter()
        .map(|b| (*b as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn fast_int8_path_stays_close_to_transformers() {
    for dir in fixtures()
        .into_iter()
        .filter(|d| d.file_name().unwrap().to_str().unwrap().starts_with("awq"))
    {
        let model = load_dir(&dir, Precision::Fast, None, |_, _| {}).unwrap();
        let (ids, _) = reference(&dir);
        let mut cache = model.new_cache(ids.len());
        let ours = model.forward(&ids, &mut cache, true).unwrap();
        let (_, theirs) = npy::read_f32(&dir.join("ref_logits.npy")).unwrap();
        let rel = relative_error(&ours, &theirs);
        eprintln!("{} (fast): relative error {rel:.2e}", dir.display());
        assert!(
            rel < 2.5e-2,
            "{}: int8-activation path relative error {rel:.3e} ≥ 2.5e-2",
            dir.display()
        );
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for dir in fixtures() {
        let model = load_dir(&dir, Precision::Exact, None, |_, _| {}).unwrap();
        let (ids, greedy) = reference(&dir);
        let mut engine = Engine::new(model, 128);
        let out = engine
            .generate(&ids, 32, SamplingParams::greedy(), &[], None, |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(out.token_ids, greedy, "{}", dir.display());
    }
}

#[test]
fn incremental_decoding_equals_full_forward() {
    let dir = &fixtures()[1];
    let model = load_dir(dir, Precision::Exact, None, |_, _| {}).unwrap();
    let (ids, _) = reference(dir);
    let mut full_cache = model.new_cache(ids.len());
    let full = model.forward(&ids, &mut full_cache, true).unwrap();
    let vocab = model.config.vocab_size;
    let mut cache = model.new_cache(ids.len());
    model.forward(&ids[..10], &mut cache, false).unwrap();
    for (i, &id) in ids.iter().enumerate().skip(10) {
        let step = model.forward(&[id], &mut cache, false).unwrap();
        let want = &full[i * vocab..(i + 1) * vocab];
        let err = step
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-4, "position {i}: max abs diff {err}");
    }
}

#[test]
fn long_prefill_runs_in_reported_steps_and_gives_the_one_shot_logits() {
    use qwen3_agent::engine::{PREFILL_STEP, Timings};
    use std::sync::{Arc, Mutex};
    let dir = &fixtures()[1];
    let model = load_dir(dir, Precision::Exact, None, |_, _| {}).unwrap();
    let vocab = model.config.vocab_size;
    let n = PREFILL_STEP + 188;
    let ids: Vec<u32> = (0..n).map(|i| (i * 37 % vocab) as u32).collect();
    let mut cache = model.new_cache(n);
    let want = model.forward(&ids, &mut cache, false).unwrap();

    let mut engine = Engine::new(model, n + 16);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    engine.set_prefill_progress(Some(Box::new(move |done, total| {
        sink.lock().unwrap().push((done, total))
    })));
    let got = engine.prefill(&ids, &mut Timings::default()).unwrap();
    assert_eq!(
        *reports.lock().unwrap(),
        [(0, n), (PREFILL_STEP, n), (n, n)]
    );
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-5, "stepped prefill differs by {err}");

    // A longer prompt sharing the cached prefix: only the new tokens are computed and counted.
    reports.lock().unwrap().clear();
    let longer: Vec<u32> = ids.iter().copied().chain([1, 2, 3]).collect();
    engine.prefill(&longer, &mut Timings::default()).unwrap();
    assert_eq!(*reports.lock().unwrap(), [(0, 3), (3, 3)]);
}
