//! `qwen3-agent run`, `chat`, `eval` and `tools` end to end on scripted agents (and a local OpenAI-style
//! server), the errors bad files get, and what is kept when a run fails.

mod common;

use common::openai_server::{delta, finish, serve, sse};
use common::{TOKENIZER, read_jsonl, run_cli, write};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    common::scratch("run", name)
}

fn run(args: &[&str]) -> (String, String, bool) {
    run_cli(args, "")
}

fn agent_yaml(script: &str) -> String {
    format!(
        "name: demo\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script:\n    - {script:?}\nsystem: Be brief.\n"
    )
}

#[test]
fn run_prints_the_result_json_and_writes_a_transcript() {
    let dir = scratch("json");
    write(
        &dir,
        "agent.yaml",
        &agent_yaml("<think>\nGreet.\n</think>\n\nHello!"),
    );
    let task = write(
        &dir,
        "task.yaml",
        "agent: agent.yaml\nprompt: Say hello\nexpect:\n  contains: [Hello]\n",
    );
    let transcript = dir.join("t.jsonl");
    let (out, err, ok) = run(&[
        "run",
        task.to_str().unwrap(),
        "--json",
        "--transcript",
        transcript.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["content"], "Hello!");
    assert_eq!(result["reasoning_content"], "Greet.");
    assert_eq!(result["rounds"], 1);
    assert_eq!(result["messages"][0]["role"], "system");
    let lines = read_jsonl(&transcript);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["run_start", "model_call", "run_end"]);
    assert_eq!(
        lines[1]["prompt"],
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hello<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(lines[2]["stop_reason"], "answer");
}

#[test]
fn failed_expectations_fail_the_run() {
    let dir = scratch("expect");
    write(&dir, "agent.yaml", &agent_yaml("Goodbye."));
    let task = write(
        &dir,
        "task.yaml",
        "agent: agent.yaml\nprompt: hi\nexpect:\n  contains: [Hello]\n",
    );
    let (_, err, ok) = run(&["run", task.to_str().unwrap(), "--quiet"]);
    assert!(!ok);
    assert!(err.contains("does not contain \"Hello\""), "{err}");
}

#[test]
fn bad_files_name_file_line_and_column() {
    let dir = scratch("errors");
    write(&dir, "agent.yaml", &agent_yaml("x"));
    let cases = [
        (
            "broken.yaml",
            "agent: agent.yaml\nprompt: [unclosed\n",
            "broken.yaml:2:",
        ),
        (
            "unknown.yaml",
            "agent: agent.yaml\nprompt: hi\npromtp: x\n",
            "unknown.yaml:3:1: unknown field `promtp`",
        ),
        (
            "inline.yaml",
            "agent:\n  name: x\n  model:\n    backend: scripted\n    pth: /tmp\nprompt: hi\n",
            "inline.yaml:5:5: unknown field `pth`",
        ),
        (
            "mcp.yaml",
            "agent:\n  name: x\n  model: {backend: scripted, path: /tmp}\n  mcpServers:\n    time: uvx mcp-server-time\nprompt: hi\n",
            "mcp.yaml:5:11:",
        ),
        (
            "mcpkey.yaml",
            "agent:\n  name: x\n  model: {backend: scripted, path: /tmp}\n  mcpServers:\n    time:\n      comand: uvx\nprompt: hi\n",
            "mcpkey.yaml:6:7: unknown field `comand`",
        ),
    ];
    for (name, text, want) in cases {
        let task = write(&dir, name, text);
        let (_, err, ok) = run(&["run", task.to_str().unwrap()]);
        assert!(!ok, "{name} should fail");
        assert!(err.contains(want), "{name}: {err}");
    }
    let task = write(&dir, "missing.yaml", "prompt: hi\nagent: nowhere.yaml\n");
    let (_, err, ok) = run(&["run", task.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("missing.yaml:2:8: loading the agent file nowhere.yaml"),
        "{err}"
    );
}

#[test]
fn the_local_backend_runs_a_task_on_a_synthetic_model() {
    let dir = scratch("local");
    let model = dir.join("model");
    let (_, err, ok) = run(&[
        "synth",
        "--preset",
        "tiny",
        "--out",
        model.to_str().unwrap(),
        "--tokenizer",
        TOKENIZER,
    ]);
    assert!(ok, "{err}");
    write(
        &dir,
        "agent.yaml",
        "name: t\nmodel:\n  backend: local\n  path: model\n  context_length: 256\ngenerate:\n  max_new_tokens: 12\n  \
         temperature: 0\n  presence_penalty: 0\n  seed: 0\n",
    );
    let task = write(
        &dir,
        "task.yaml",
        "agent: agent.yaml\nprompt: What time is it in Tokyo?\n",
    );
    let transcript = dir.join("t.jsonl");
    let (out, err, ok) = run(&[
        "run",
        task.to_str().unwrap(),
        "--json",
        "--transcript",
        transcript.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lines = read_jsonl(&transcript);
    let call = lines.iter().find(|l| l["event"] == "model_call").unwrap();
    let prompt = call["prompt"].as_str().unwrap();
    // The same prompt through `generate`, greedy with the same settings, gives the counts the run
    // must report: the agent loop adds and loses no token.
    let (generated, err, ok) = run(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "--raw",
        "--temperature",
        "0",
        "--max-new-tokens",
        "12",
        "--json",
    ]);
    assert!(ok, "{err}");
    let generated: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(call["raw_output"], generated["text"]);
    assert_eq!(
        result["usage"]["completion_tokens"],
        generated["token_ids"].as_array().unwrap().len()
    );
    assert_eq!(result["usage"]["prompt_tokens"], generated["prompt_tokens"]);
    let tokenizer = qwen3_agent::chat::Tokenizer::from_model_dir(Path::new(TOKENIZER)).unwrap();
    assert_eq!(
        result["usage"]["prompt_tokens"],
        tokenizer.encode(prompt).unwrap().len(),
        "the prompt's tokens, counted by the tokenizer"
    );
    // The length limit is reported exactly when it ended the answer.
    let cut_off = call["finish_reason"] == "length";
    assert_eq!(cut_off, generated["finish_reason"] == "length");
    assert_eq!(transcript_has_cut_off_notice(&lines), cut_off, "{lines:?}");
}

/// Whether the transcript holds the notice that max_new_tokens cut the answer.
fn transcript_has_cut_off_notice(lines: &[serde_json::Value]) -> bool {
    lines
        .iter()
        .any(|l| l["event"] == "notice" && l["text"] == "the answer was cut off by max_new_tokens")
}

#[test]
fn chat_answers_each_turn_until_exit() {
    let dir = scratch("chat");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: c\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script:\n    - \"First.\"\n    - \"Second.\"\ngenerate:\n  thinking: false\n"
        ),
    );
    let (stdout, stderr, ok) = run_cli(&["chat", agent.to_str().unwrap()], "one\ntwo\n/exit\n");
    assert!(ok, "{stderr}");
    // Each turn: the prompt, the streamed answer, a newline; then the prompt that read /exit.
    assert_eq!(stdout, "\n> First.\n\n> Second.\n\n> ");
}

#[test]
fn tools_lists_what_the_prompt_will_show() {
    let dir = scratch("tools");
    let agent = write(&dir, "agent.yaml", &agent_yaml("x"));
    let (out, err, ok) = run(&["tools", agent.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn generate_stops_at_a_stop_string() {
    let dir = scratch("stop");
    let model = dir.join("model");
    let (_, err, ok) = run(&[
        "synth",
        "--preset",
        "tiny",
        "--out",
        model.to_str().unwrap(),
        "--tokenizer",
        TOKENIZER,
    ]);
    assert!(ok, "{err}");
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Hi",
            "--raw",
            "--temperature",
            "0",
            "--max-new-tokens",
            "16",
            "--json",
        ];
        args.extend_from_slice(extra);
        let (out, err, ok) = run(&args);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let full = generate(&[]);
    let cut: String = full
        .chars()
        .skip(full.chars().count() / 2)
        .take(3)
        .collect();
    let stopped = generate(&["--stop", &cut]);
    assert_eq!(
        stopped,
        full[..full.find(&cut).unwrap()],
        "full text: {full:?}"
    );
}

#[test]
fn the_transcript_redacts_the_api_key_and_mcp_env_and_header_values() {
    let dir = scratch("redact");
    // Disabled servers are shown in run_start but never started.
    write(
        &dir,
        "agent.yaml",
        &format!(
            "name: r\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  api_key: sk-model-secret\n  \
             script: [\"Hi.\"]\nmcpServers:\n  local:\n    command: some-server\n    env: {{API_TOKEN: env-secret}}\n    \
             disabled: true\n  remote:\n    url: https://example.invalid/mcp\n    headers: {{Authorization: \"Bearer header-secret\"}}\n    \
             disabled: true\n"
        ),
    );
    let task = write(&dir, "task.yaml", "agent: agent.yaml\nprompt: hi\n");
    let path = dir.join("t.jsonl");
    let (_, err, ok) = run(&[
        "run",
        task.to_str().unwrap(),
        "--quiet",
        "--transcript",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in ["sk-model-secret", "env-secret", "header-secret"] {
        assert!(!text.contains(secret), "{secret} reached the transcript");
    }
    let start = &read_jsonl(&path)[0];
    let servers = &start["agent"]["agent"]["mcpServers"];
    assert_eq!(servers["local"]["env"], json!({"API_TOKEN": "<redacted>"}));
    assert_eq!(
        servers["remote"]["headers"],
        json!({"Authorization": "<redacted>"})
    );
    assert_eq!(start["agent"]["agent"]["model"]["api_key"], "<redacted>");
}

#[test]
fn a_failed_run_still_ends_its_transcript_with_the_error() {
    let dir = scratch("run-error");
    let call = "<tool_call>\n{\"name\": \"nothing\", \"arguments\": {}}\n</tool_call>";
    write(&dir, "agent.yaml", &agent_yaml(call));
    let task = write(&dir, "task.yaml", "agent: agent.yaml\nprompt: hi\n");
    let path = dir.join("t.jsonl");
    let (_, err, ok) = run(&[
        "run",
        task.to_str().unwrap(),
        "--quiet",
        "--transcript",
        path.to_str().unwrap(),
    ]);
    assert!(!ok);
    let message =
        "the scripted backend has no output left for model call 2 (its script has 1 entries)";
    assert_eq!(err, format!("error: {message}\n"));
    let end = read_jsonl(&path).pop().unwrap();
    assert_eq!(
        end,
        json!({"event": "run_end", "rounds": 1, "stop_reason": "error",
            "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "error": message})
    );
}

#[test]
fn eval_scores_a_failing_case_as_failed_and_still_writes_the_report() {
    let dir = scratch("eval");
    write(
        &dir,
        "agent.yaml",
        &agent_yaml("<think>\n\n</think>\n\nThe answer is 42."),
    );
    let cases = write(
        &dir,
        "cases.jsonl",
        "{\"task\": \"t\", \"prompt\": \"first\", \"expect\": {}}\n{\"task\": \"t\", \"prompt\": \"second\", \"expect\": {}}\n",
    );
    let report = dir.join("report.json");
    let agent = dir.join("agent.yaml");
    let (out, err, ok) = run(&[
        "eval",
        agent.to_str().unwrap(),
        cases.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let summary: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["cases"], 2);
    assert_eq!(summary["failed_runs"], 1);
    assert_eq!(summary["tool_accuracy"], 1.0 / 2.0);
    let report: Json = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let first = &report["cases"][0];
    assert_eq!(first["answer"], "The answer is 42.");
    assert_eq!(first["stop_reason"], "answer");
    assert_eq!(first["right_call"], true);
    assert!(first.get("error").is_none(), "{first}");
    let second = &report["cases"][1];
    assert_eq!(second["stop_reason"], "error");
    assert_eq!(
        second["error"],
        "the scripted backend has no output left for model call 2 (its script has 1 entries)"
    );
    assert_eq!(second["right_call"], false);
    assert_eq!(second["answer_has_result"], false);
}

#[test]
fn chat_keeps_the_conversation_when_the_server_fails_and_retry_answers_it() {
    let server = serve(vec![
        (400, "{\"error\": \"model is loading\"}".into()),
        (
            200,
            sse(&[delta(json!({"content": "Hi again."})), finish("stop")]),
        ),
    ]);
    let dir = scratch("chat-retry");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: c\nmodel:\n  backend: openai\n  base_url: {}\n  model: m\ngenerate:\n  thinking: false\n",
            server.url
        ),
    );
    let (stdout, stderr, ok) =
        run_cli(&["chat", agent.to_str().unwrap()], "hello\n/retry\n/exit\n");
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("400")
            && stderr.contains("model is loading")
            && stderr.contains("(the conversation is kept: /retry to try again)"),
        "{stderr}"
    );
    assert_eq!(stdout, "\n> \n\n> Hi again.\n\n> ");
    let bodies = server.bodies.lock().unwrap();
    let hello = json!([{"role": "user", "content": "hello"}]);
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["messages"], hello);
    assert_eq!(
        bodies[1]["messages"], hello,
        "the retry sent the kept history"
    );
}

/// `qwen3-agent ARGS…` run in `dir` (so task files are labelled as given): (stdout, stderr, success).
fn run_in(dir: &Path, args: &[&str]) -> (String, String, bool) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

/// A scripted agent answering its runs in turn (one backend: the script goes on from run to run),
/// a task with one prompt and a task with two `prompts:`; `expect` on the second.
fn three_runs(dir: &Path, expect: &str) {
    write(
        dir,
        "agent.yaml",
        &format!(
            "name: demo\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [Alpha, Beta, Gamma]\n\
             generate: {{thinking: false}}\n"
        ),
    );
    write(
        dir,
        "one.yaml",
        "agent: agent.yaml\nprompt: first\nexpect:\n  contains: [Alpha]\n",
    );
    write(
        dir,
        "two.yaml",
        &format!("agent: agent.yaml\nprompts: [second, third]\nexpect:\n  contains: [{expect}]\n"),
    );
}

#[test]
fn several_runs_give_one_json_array_in_input_order_and_a_transcript_each() {
    let dir = scratch("many-json");
    three_runs(&dir, "a");
    let (out, err, ok) = run_in(
        &dir,
        &[
            "run",
            "one.yaml",
            "two.yaml",
            "--json",
            "--transcript",
            "t.jsonl",
        ],
    );
    assert!(ok, "{err}");
    let results: Json = serde_json::from_str(&out).unwrap();
    let results = results.as_array().unwrap();
    let labels: Vec<&str> = results
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["one.yaml", "two.yaml#1", "two.yaml#2"]);
    let answers: Vec<&str> = results
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert_eq!(answers, ["Alpha", "Beta", "Gamma"]);
    for (result, prompt) in results.iter().zip(["first", "second", "third"]) {
        assert_eq!(result["stop_reason"], "answer");
        assert_eq!(result["rounds"], 1);
        assert_eq!(result["messages"][0]["content"], prompt, "{result}");
        assert_eq!(result["failed_checks"], json!([]), "{result}");
        assert!(result.get("error").is_none(), "{result}");
    }
    assert!(err.contains("all 3 runs succeeded"), "{err}");
    for (n, label) in (1..=3).zip(labels) {
        let lines = read_jsonl(&dir.join(format!("t-{n}.jsonl")));
        let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["run_start", "model_call", "run_end"]);
        assert_eq!(lines[2]["label"], label);
    }
    assert!(!dir.join("t.jsonl").exists());
}

#[test]
fn a_failed_check_in_one_of_three_runs_fails_the_command_naming_it() {
    let dir = scratch("many-expect");
    three_runs(&dir, "mm");
    let (out, err, ok) = run_in(&dir, &["run", "one.yaml", "two.yaml"]);
    assert!(!ok, "{out}");
    // Each result whole and labelled, in the order the runs ended (here one after another).
    assert_eq!(
        out,
        "=== one.yaml ===\nAlpha\n=== two.yaml#1 ===\nBeta\n=== two.yaml#2 ===\nGamma\n"
    );
    assert!(
        err.contains("two.yaml#1 failed: expectations failed: the answer does not contain \"mm\""),
        "{err}"
    );
    assert!(
        err.contains("error: 1 of 3 runs failed: two.yaml#1\n"),
        "{err}"
    );
    let (out, _, ok) = run_in(&dir, &["run", "one.yaml", "two.yaml", "--json", "--quiet"]);
    assert!(!ok);
    let results: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(
        results[1]["failed_checks"],
        json!(["the answer does not contain \"mm\""])
    );
    assert_eq!(results[2]["failed_checks"], json!([]));
    let (out, _, ok) = run_in(&dir, &["run", "two.yaml", "--quiet"]);
    assert!(!ok);
    assert_eq!(out, "=== two.yaml#1 ===\nAlpha\n=== two.yaml#2 ===\nBeta\n");
}

#[test]
fn several_runs_need_one_model_and_every_file_is_checked_first() {
    let dir = scratch("many-errors");
    three_runs(&dir, "a");
    write(
        &dir,
        "other.yaml",
        &format!(
            "agent:\n  name: other\n  model: {{backend: scripted, path: {TOKENIZER}, script: [x]}}\nprompt: hi\n"
        ),
    );
    let (out, err, ok) = run_in(&dir, &["run", "one.yaml", "other.yaml"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        err.contains(
            "one.yaml (agent agent.yaml) and other.yaml (agent other.yaml) use different models"
        ),
        "{err}"
    );
    write(&dir, "bad.yaml", "agent: agent.yaml\nprompts: []\n");
    let (out, err, ok) = run_in(&dir, &["run", "one.yaml", "bad.yaml", "--json"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("bad.yaml:2:1: prompts is empty"), "{err}");
}
