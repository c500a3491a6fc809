//! Tokenizer loading, special-token ids from the files, and streaming detokenization of multi-byte text.

use qwen3_agent::chat::Tokenizer;
use std::path::Path;

fn tokenizer() -> Tokenizer {
    Tokenizer::from_model_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer"),
    )
    .unwrap()
}

#[test]
fn special_token_ids_come_from_the_files() {
    let tok = tokenizer();
    assert_eq!(tok.eos_token_id, Some(151645));
    for (text, id) in [
        ("<think>", 151667),
        ("</think>", 151668),
        ("<tool_call>", 151657),
        ("</tool_call>", 151658),
        ("<|im_start|>", 151644),
    ] {
        assert_eq!(tok.token_id(text), Some(id), "{text}");
    }
}

#[test]
fn streaming_decode_never_splits_a_character() {
    let tok = tokenizer();
    let text =
        "Tokyo 東京 🕐🇯🇵 Ελληνικά العربية हिन्दी 한국어 ñandú — ok.\n<think>x</think><tool_call>";
    let ids = tok.encode(text).unwrap();
    let mut decoder = tok.incremental_decoder();
    let mut streamed = String::new();
    for id in &ids {
        let delta = decoder.push(*id).unwrap();
        assert!(
            !delta.contains('\u{FFFD}'),
            "broken UTF-8 streamed: {delta:?}"
        );
        streamed.push_str(&delta);
    }
    streamed.push_str(&decoder.finish().unwrap());
    assert_eq!(streamed, text);
    assert_eq!(tok.decode(&ids).unwrap(), text);
}

#[test]
fn missing_tokenizer_says_which_files_are_needed() {
    let err = Tokenizer::from_model_dir(Path::new("/nonexistent-model-dir"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
