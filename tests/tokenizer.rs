//! Tokenizer loading, special-token ids from the files, and streaming detokenization of multi-byte text.

use qwen3_agent::chat::Tokenizer;
use std::path::Path;

/// Loaded once: the property test below decodes hundreds of cases.
fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_model_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer"),
        )
        .unwrap()
    })
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

/// The streamed deltas plus `finish` are exactly the one-shot decode, for any ids: valid text, ids
/// that split characters, and a stream cut in the middle of a character.
fn streamed(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut decoder = tok.incremental_decoder();
    let mut out = String::new();
    for id in ids {
        out.push_str(&decoder.push(*id).unwrap());
    }
    out.push_str(&decoder.finish().unwrap());
    out
}

#[test]
fn a_stream_cut_inside_a_character_ends_as_the_one_shot_decode() {
    let tok = tokenizer();
    let ids = tok.encode("🇯🇵🕐").unwrap();
    assert!(ids.len() > 2, "the flags must span several byte tokens");
    for cut in 1..ids.len() {
        assert_eq!(
            streamed(tok, &ids[..cut]),
            tok.decode(&ids[..cut]).unwrap(),
            "cut after {cut} ids"
        );
    }
}

proptest::proptest! {
    #[test]
    fn streaming_equals_one_shot_decode(ids in proptest::collection::vec(0u32..151_643, 0..40)) {
        let tok = tokenizer();
        proptest::prop_assert_eq!(streamed(tok, &ids), tok.decode(&ids).unwrap());
    }
}

/// The vocabulary as constrained decoding sees it: each token's bytes (byte-level BPE undone), control
/// tokens marked, the tags the model writes as text left as text; every ordinary token's bytes decode
/// back to what the tokenizer decodes it to.
#[test]
fn vocabulary_bytes_are_the_tokens_text() {
    let tok = tokenizer();
    let vocabulary = tok.vocabulary().unwrap();
    let id = |text: &str| tok.token_id(text).unwrap() as usize;
    assert_eq!(vocabulary[id("<|im_end|>")], (b"<|im_end|>".to_vec(), true));
    assert_eq!(vocabulary[id("<think>")], (b"<think>".to_vec(), false));
    assert_eq!(
        vocabulary[id("<tool_call>")],
        (b"<tool_call>".to_vec(), false)
    );
    let the = tok.encode(" the").unwrap();
    assert_eq!(the.len(), 1);
    assert_eq!(vocabulary[the[0] as usize], (b" the".to_vec(), false));
    for (i, (bytes, special)) in vocabulary.iter().enumerate().step_by(97) {
        if !special && let Ok(text) = std::str::from_utf8(bytes) {
            assert_eq!(tok.decode(&[i as u32]).unwrap(), text, "token {i}");
        }
    }
}
