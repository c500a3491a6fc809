//! The `render` and `parse` commands exactly as users and checks call them.

mod common;

use common::run_cli as run;

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qwen3-tokenizer"
);

#[test]
fn render_prints_the_prompt_exactly() {
    let (out, _, ok) = run(
        &["render", "--model", MODEL],
        r#"{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true, "enable_thinking": false}"#,
    );
    assert!(ok);
    assert_eq!(
        out,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
}

#[test]
fn render_ids_prints_a_json_array() {
    let (out, _, ok) = run(
        &["render", "--model", MODEL, "--ids"],
        r#"{"messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert!(ok);
    let ids: Vec<u32> = serde_json::from_str(&out).unwrap();
    assert_eq!(ids, vec![151644, 872, 198, 6023, 151645, 198]);
}

#[test]
fn render_rejects_a_request_without_messages() {
    let (_, err, ok) = run(&["render", "--model", MODEL], r#"{"tools": []}"#);
    assert!(!ok);
    assert!(err.contains("\"messages\""), "{err}");
}

#[test]
fn parse_prints_the_documented_object() {
    let text = "<think>\nplan\n</think>\n\nOK.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>";
    for chunk in [None, Some("1"), Some("3")] {
        let mut args = vec!["parse"];
        if let Some(n) = chunk {
            args.extend(["--chunk", n]);
        }
        let (out, _, ok) = run(&args, text);
        assert!(ok);
        assert_eq!(
            out.trim_end(),
            r#"{"reasoning_content":"plan","content":"OK.","tool_calls":[{"name":"f","arguments":{"a":1}}],"errors":[]}"#
        );
    }
    let (out, _, _) = run(
        &["parse", "--no-thinking", "--finish", "length"],
        "<tool_call>\n{\"name\": \"f\"",
    );
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["reasoning_content"], serde_json::Value::Null);
    assert_eq!(parsed["tool_calls"], serde_json::json!([]));
    assert!(
        parsed["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("truncated")
    );
}
