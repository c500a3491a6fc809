//! Byte-for-byte and id-for-id parity with transformers' `apply_chat_template` on the goldens that
//! `scripts/gen_template_goldens.py` wrote.

use qwen3_agent::chat::{ChatTemplate, RenderRequest, Tokenizer};
use serde_json::Value as Json;
use std::path::Path;

#[test]
fn every_golden_renders_identically() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let template = ChatTemplate::from_model_dir(&dir).unwrap();
    let tokenizer = Tokenizer::from_model_dir(&dir).unwrap();
    let goldens: Vec<Json> = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/chat_template.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        goldens.len() >= 40,
        "the corpus must hold at least 40 conversations"
    );
    let mut failures = Vec::new();
    for golden in &goldens {
        let name = golden["name"].as_str().unwrap();
        let request = RenderRequest::from_json(golden["request"].clone()).unwrap();
        let text = template.render(&request).unwrap();
        if text != golden["text"].as_str().unwrap() {
            failures.push(format!(
                "{name}: text differs\n--- ours\n{text}\n--- transformers\n{}",
                golden["text"]
            ));
            continue;
        }
        let ids = tokenizer.encode(&text).unwrap();
        let want: Vec<u32> = serde_json::from_value(golden["ids"].clone()).unwrap();
        if ids != want {
            failures.push(format!("{name}: token ids differ"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} goldens differ:\n{}",
        failures.len(),
        goldens.len(),
        failures.join("\n")
    );
}
