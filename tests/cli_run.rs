//! `qwen3-agent run` end to end on scripted agents, and the errors bad files get.

use std::path::{Path, PathBuf};
use std::process::Command;

const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qwen3-tokenizer"
);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
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
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&transcript)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["run_start", "model_call", "run_end"]);
    assert!(
        lines[1]["prompt"]
            .as_str()
            .unwrap()
            .starts_with("<|im_start|>system\nBe brief.<|im_end|>")
    );
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
        "name: t\nmodel:\n  backend: local\n  path: model\n  context_length: 256\ngenerate:\n  max_new_tokens: 12\n  temperature: 0\n",
    );
    let task = write(
        &dir,
        "task.yaml",
        "agent: agent.yaml\nprompt: What time is it in Tokyo?\n",
    );
    let (out, err, ok) = run(&["run", task.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        result["usage"]["completion_tokens"], 12,
        "greedy noise never hits an end token in 12 steps"
    );
    assert!(result["usage"]["prompt_tokens"].as_u64().unwrap() > 10);
    assert!(
        err.contains("cut off"),
        "the length limit is reported: {err}"
    );
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
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .args(["chat", agent.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("First.") && stdout.contains("Second."),
        "{stdout}"
    );
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
fn every_shipped_agent_definition_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            // Loading (not starting servers or models) is what must never break.
            qwen3_agent::config::load_agent(&path)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            checked += 1;
        }
    }
    assert!(checked >= 2);
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
