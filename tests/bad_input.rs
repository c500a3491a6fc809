//! Bad input ends in a clear error, never a panic: out-of-range numbers in agent and task files (with
//! the `file:line:column` of the key), a missing model directory, impossible `quantize` shapes and
//! out-of-range flags. The config loader is also fed arbitrary bytes and YAML-ish documents.

mod common;

use common::{TOKENIZER, write};
use proptest::prelude::*;
use qwen3_agent::config;
use qwen3_agent::engine::Speculation;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    common::scratch("bad", name)
}

/// A scripted agent with `extra` appended at the top level (line 5 onwards).
fn agent(extra: &str) -> String {
    format!("name: a\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n{extra}")
}

#[test]
fn agent_values_out_of_range_are_reported_at_their_key() {
    let dir = scratch("agent");
    let cases = [
        (
            "timeout: -1\n",
            "5:1: timeout must be a number of seconds above 0 and at most 604800 (7 days), not -1",
        ),
        (
            "timeout: .nan\n",
            "5:1: timeout must be a number of seconds above 0",
        ),
        ("timeout: .inf\n", "5:1: timeout must be"),
        ("timeout: 1e300\n", "5:1: timeout must be"),
        (
            "max_rounds: 0\n",
            "5:1: max_rounds must be at least 1, not 0",
        ),
        (
            "generate:\n  temperature: -0.5\n",
            "6:3: generate.temperature must be a number of at least 0",
        ),
        (
            "generate:\n  top_p: 2\n",
            "6:3: generate.top_p must be above 0 and at most 1",
        ),
        (
            "generate:\n  max_new_tokens: 0\n",
            "6:3: generate.max_new_tokens must be at least 1",
        ),
        (
            "generate:\n  min_p: .nan\n",
            "6:3: generate.min_p must be between 0 (off) and 1, not NaN",
        ),
        (
            "generate:\n  presence_penalty: 9\n",
            "6:3: generate.presence_penalty must be between -2 and 2",
        ),
        (
            "generate:\n  repetition_penalty: 0\n",
            "6:3: generate.repetition_penalty must be above 0",
        ),
        (
            "generate:\n  stop: [\"\"]\n",
            "6:3: generate.stop holds an empty text",
        ),
        (
            "tools:\n  code_interpreter:\n    timeout: -5\n",
            "7:5: tools.code_interpreter.timeout must be a number of seconds above 0",
        ),
        (
            "tools:\n  code_interpreter:\n    memory_mb: 0\n",
            "7:5: tools.code_interpreter.memory_mb must be at least 1 and at most 4096",
        ),
        (
            "tools:\n  code_interpreter:\n    scratch_mb: 99999999999999\n",
            "7:5: tools.code_interpreter.scratch_mb must be at least 1",
        ),
        (
            "tools:\n  code_interpreter:\n    max_output_bytes: 0\n",
            "7:5: tools.code_interpreter.max_output_bytes must be at least 1",
        ),
        (
            "mcpServers:\n  slow:\n    command: x\n    timeout: 0\n",
            "8:5: mcpServers.slow.timeout must be a number of seconds above 0",
        ),
        (
            "mcpServers:\n  slow:\n    command: x\n    toolTimeouts: {search: -2}\n",
            "8:20: mcpServers.slow.toolTimeouts.search must be a number of seconds",
        ),
        (
            "mcpServers:\n  nothing:\n    args: [a]\n",
            "6:3: mcpServers.nothing needs either command (stdio) or url (HTTP)",
        ),
        // Types serde refuses carry serde-saphyr's own location.
        ("max_rounds: -1\n", "5:13:"),
    ];
    for (extra, want) in cases {
        let file = write(&dir, "agent.yaml", &agent(extra));
        let err = format!("{:#}", config::load_agent(&file).expect_err(extra));
        let want = format!("{}:{want}", file.display());
        assert!(
            err.starts_with(&want),
            "{extra:?}\n got: {err}\nwant: {want}"
        );
    }
}

#[test]
fn model_settings_out_of_range_and_missing_fields_are_located() {
    let dir = scratch("model");
    let cases = [
        (
            "name: a\nmodel:\n  backend: local\n  device: cpu\n",
            "2:1: model.path is required for the local backend",
        ),
        (
            "name: a\nmodel:\n  backend: openai\n  model: m\n",
            "3:3: the openai backend needs model.base_url",
        ),
        (
            "name: a\nmodel:\n  backend: openai\n  base_url: http://x\n  model: m\n  read_timeout: -3\n",
            "6:3: model.read_timeout must be a number of seconds above 0",
        ),
        (
            "name: a\nmodel:\n  backend: local\n  path: m\n  context_length: 0\n",
            "5:3: model.context_length must be at least 1 and at most 1048576",
        ),
        (
            "name: a\nmodel:\n  backend: local\n  path: m\n  rope_scaling: {rope_type: yarn, factor: 0.5}\n",
            "5:35: model.rope_scaling.factor must be between 1 and 32",
        ),
        (
            "name: a\nmodel:\n  backend: local\n  path: m\n  device: cpu\n  kv_cache: fp8\n",
            "6:3: kv_cache: fp8 runs on the GPU only",
        ),
    ];
    for (text, want) in cases {
        let file = write(&dir, "agent.yaml", text);
        let err = format!("{:#}", config::load_agent(&file).expect_err(text));
        let want = format!("{}:{want}", file.display());
        assert!(
            err.starts_with(&want),
            "{text:?}\n got: {err}\nwant: {want}"
        );
    }
}

#[test]
fn task_overrides_and_inline_agents_are_checked_where_they_are_written() {
    let dir = scratch("task");
    write(&dir, "agent.yaml", &agent(""));
    let cases = [
        (
            "agent: agent.yaml\nprompt: hi\nmax_rounds: 0\n",
            "3:1: max_rounds must be at least 1, not 0",
        ),
        (
            "agent: agent.yaml\nprompt: hi\ngenerate:\n  temperature: .nan\n",
            "4:3: generate.temperature must be a number of at least 0 (0 is greedy), not NaN",
        ),
        (
            "agent: agent.yaml\nprompt: hi\nexpect:\n  max_rounds: 0\n",
            "4:3: expect.max_rounds must be at least 1",
        ),
        (
            "agent: agent.yaml\nprompt: hi\nmessages: [{role: user, content: hi}]\n",
            "3:1: give one of prompt, prompts, messages or prompt_from, not several",
        ),
        (
            "agent: agent.yaml\nmessages: []\n",
            "2:1: messages is empty",
        ),
        (
            "agent: agent.yaml\nprompts: []\n",
            "2:1: prompts is empty: list at least one prompt",
        ),
        (
            "agent: agent.yaml\nprompts: [a, b]\nprompt: c\n",
            "2:1: give one of prompt, prompts, messages or prompt_from, not several",
        ),
        (
            "agent: agent.yaml\nprompts:\n  - a\nmessages: [{role: user, content: hi}]\n",
            "4:1: give one of prompt, prompts, messages or prompt_from, not several",
        ),
        ("agent: agent.yaml\nprompts: [a, [b]]\n", "2:"),
        (
            "agent: agent.yaml\n",
            "1:1: the task needs a prompt (or prompts, messages, or prompt_from: {server, name, arguments})",
        ),
        (
            &format!(
                "agent:\n  name: x\n  model: {{backend: scripted, path: {TOKENIZER}}}\n  timeout: 0\nprompt: hi\n"
            ),
            "4:3: timeout must be a number of seconds above 0",
        ),
    ];
    for (text, want) in cases {
        let file = write(&dir, "task.yaml", text);
        let err = format!("{:#}", config::load_task(&file).expect_err(text));
        let want = format!("{}:{want}", file.display());
        assert!(
            err.starts_with(&want),
            "{text:?}\n got: {err}\nwant: {want}"
        );
    }
    // A bad agent file named by a task: the task's `agent:` line, then the agent's own location.
    write(&dir, "bad.yaml", &agent("timeout: -1\n"));
    let file = write(&dir, "task.yaml", "prompt: hi\nagent: bad.yaml\n");
    let err = format!("{:#}", config::load_task(&file).unwrap_err());
    assert!(
        err.contains("task.yaml:2:8: loading the agent file bad.yaml")
            && err.contains("bad.yaml:5:1: timeout must be"),
        "{err}"
    );
}

#[test]
fn mcp_config_files_are_checked_with_json_locations() {
    let dir = scratch("mcp");
    let path = write(
        &dir,
        "servers.json",
        "{\n  \"mcpServers\": {\n    \"t\": {\"command\": \"x\", \"timeout\": -1}\n  }\n}\n",
    );
    let err = format!("{:#}", config::load_mcp_config(&path).unwrap_err());
    let want = format!(
        "{}:3:27: mcpServers.t.timeout must be a number of seconds",
        path.display()
    );
    assert!(err.starts_with(&want), "got: {err}\nwant: {want}");
    let path = write(&dir, "vscode.json", "{\"servers\": {\"u\": {}}}");
    let err = format!("{:#}", config::load_mcp_config(&path).unwrap_err());
    assert!(
        err.contains("1:14: servers.u needs either command"),
        "{err}"
    );
}

#[test]
fn oversized_config_files_are_refused_before_parsing() {
    let dir = scratch("big");
    let big = "#".repeat(config::MAX_CONFIG_BYTES as usize + 1);
    let file = write(&dir, "agent.yaml", &big);
    let err = config::load_agent(&file).unwrap_err().to_string();
    assert!(err.contains("larger than 4 MiB"), "{err}");
}

#[test]
fn a_missing_relative_model_directory_is_not_looked_up_on_the_hub() {
    let dir = scratch("hub");
    for (written, missing) in [
        ("weights", dir.join("weights")),
        ("./weights", dir.join("./weights")),
        ("../nowhere/x", dir.join("../nowhere/x")),
        ("a/b/c", dir.join("a/b/c")),
    ] {
        let file = write(
            &dir,
            "agent.yaml",
            &format!("name: a\nmodel:\n  backend: local\n  path: {written}\n"),
        );
        let loaded = config::load_agent(&file).unwrap();
        let path = loaded.agent.model.path.unwrap();
        assert_eq!(path, missing, "{written} resolves against the agent file");
        let err = qwen3_agent::model::hub::resolve_model_dir(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not exist") && err.contains(&missing.display().to_string()),
            "{written}: {err}"
        );
    }
    // A hub id is kept as written when no such directory is beside the file, and used as a
    // directory when one is.
    let file = write(
        &dir,
        "agent.yaml",
        "name: a\nmodel:\n  backend: local\n  path: Qwen/Qwen3-8B-AWQ\n",
    );
    let id = config::load_agent(&file).unwrap().agent.model.path.unwrap();
    assert_eq!(id, Path::new("Qwen/Qwen3-8B-AWQ"));
    std::fs::create_dir_all(dir.join("Qwen/Qwen3-8B-AWQ")).unwrap();
    let local = config::load_agent(&file).unwrap().agent.model.path.unwrap();
    assert_eq!(local, dir.join("Qwen/Qwen3-8B-AWQ"));
}

fn run(args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "{args:?} panicked: {stderr}"
    );
    (stderr, out.status.success())
}

#[test]
fn run_reports_a_missing_model_directory() {
    let dir = scratch("run");
    write(
        &dir,
        "agent.yaml",
        "name: a\nmodel:\n  backend: local\n  path: no-such-model\n",
    );
    let task = write(&dir, "task.yaml", "agent: agent.yaml\nprompt: hi\n");
    let (err, ok) = run(&["run", task.to_str().unwrap()]);
    assert!(!ok);
    let want = format!(
        "the model directory {} does not exist",
        dir.join("no-such-model").display()
    );
    assert!(err.contains(&want), "{err}");
}

fn dense_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/dense-bf16")
}

#[test]
fn quantize_refuses_shapes_it_cannot_pack() {
    let dir = scratch("quantize");
    let input = dense_fixture();
    let out = dir.join("out");
    for (group, want) in [
        ("0", "group size must be a positive multiple of 8"),
        ("12", "group size must be a positive multiple of 8"),
        (
            "24",
            "64 input features are not a multiple of the group size 24",
        ),
    ] {
        let (err, ok) = run(&[
            "quantize",
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--group-size",
            group,
        ]);
        assert!(!ok && err.contains(want), "--group-size {group}: {err}");
    }
    // A linear weight that is not a matrix.
    let odd = dir.join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::copy(input.join("config.json"), odd.join("config.json")).unwrap();
    let values = vec![0u8; 4 * 4 * 4 * 4];
    let tensor =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 4, 4], &values)
            .unwrap();
    safetensors::serialize_to_file(
        [("model.layers.0.mlp.down_proj.weight", tensor)],
        None,
        &odd.join("model.safetensors"),
    )
    .unwrap();
    let options = qwen3_agent::model::quantize::QuantizeOptions {
        group_size: 32,
        max_shard_bytes: 1 << 20,
        embeddings: false,
    };
    let err = qwen3_agent::model::quantize::quantize_dir(&odd, &out, &options, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("only 2-D [out, in] linear weights"), "{err}");
}

#[test]
fn out_of_range_flags_are_refused_by_name() {
    let model = dense_fixture();
    let model = model.to_str().unwrap();
    for (flags, want) in [
        (&["--temperature", "NaN"][..], "--temperature"),
        (&["--temperature=-1"][..], "--temperature"),
        (&["--top-p", "0"][..], "--top-p"),
        (&["--max-new-tokens", "0"][..], "--max-new-tokens"),
        (&["--context-length", "99999999999"][..], "--context-length"),
        (&["--rope-scaling-factor=-1"][..], "--rope-scaling-factor"),
        (&["--threads", "0"][..], "--threads"),
    ] {
        let mut args = vec!["generate", "--model", model, "--prompt", "hi"];
        args.extend_from_slice(flags);
        let (err, ok) = run(&args);
        assert!(
            !ok && err.contains(want) && err.contains("must be"),
            "{flags:?}: {err}"
        );
    }
    let (err, ok) = run(&["bench", "--model", model, "--prompt-tokens", "0"]);
    assert!(!ok && err.contains("--prompt-tokens"), "{err}");
    let (err, ok) = run(&[
        "logits",
        "--model",
        model,
        "--ids",
        "1",
        "--out",
        "/dev/null",
        "--device",
        "cpu",
        "--kv-cache",
        "fp8",
    ]);
    assert!(
        !ok && err.contains("fp8 KV cache runs on the GPU only"),
        "{err}"
    );
    let (err, ok) = run(&[
        "logits",
        "--model",
        model,
        "--ids",
        "1,999999",
        "--out",
        "/dev/null",
    ]);
    assert!(!ok && err.contains("token id 999999 is outside"), "{err}");
}

/// Fragments of agent and task files, right and wrong, to build YAML-ish documents from.
fn fragment() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("name"),
        Just("model"),
        Just("backend"),
        Just("path"),
        Just("timeout"),
        Just("max_rounds"),
        Just("generate"),
        Just("temperature"),
        Just("tools"),
        Just("code_interpreter"),
        Just("memory_mb"),
        Just("mcpServers"),
        Just("command"),
        Just("agent"),
        Just("prompt"),
        Just("messages"),
        Just("stop"),
        Just("<<"),
        Just("&a"),
    ];
    let value = prop_oneof![
        Just("-1".to_string()),
        Just(".nan".to_string()),
        Just("1e400".to_string()),
        Just("0".to_string()),
        Just("scripted".to_string()),
        Just("*a".to_string()),
        Just("[".to_string()),
        Just("{}".to_string()),
        Just("~".to_string()),
        Just("18446744073709551616".to_string()),
        "[ -~]{0,8}",
    ];
    (0usize..4, key, value)
        .prop_map(|(indent, key, value)| format!("{}{key}: {value}\n", "  ".repeat(indent)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_load_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let file = Path::new("/nonexistent/fuzz.yaml");
        let text = String::from_utf8_lossy(&bytes);
        let _ = config::parse_agent(&text, file);
        let _ = config::parse_task(&text, file);
    }

    #[test]
    fn yaml_ish_documents_load_or_fail_cleanly(
        lines in proptest::collection::vec(fragment(), 0..16),
    ) {
        let text: String = lines.concat();
        let file = Path::new("/nonexistent/fuzz.yaml");
        if let Err(e) = config::parse_agent(&text, file) {
            // Every error names the file it is about.
            prop_assert!(format!("{e:#}").contains("fuzz.yaml"), "{e:#}");
        }
        let _ = config::parse_task(&text, file);
    }
}

#[test]
fn model_speculation_takes_its_two_values_and_locates_others() {
    let dir = scratch("speculation");
    let text = format!(
        "name: a\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  speculation: ngram\n"
    );
    let file = write(&dir, "agent.yaml", &text);
    let err = format!("{:#}", config::load_agent(&file).expect_err("ngram"));
    assert!(err.starts_with(&format!("{}:5:", file.display())), "{err}");
    assert!(
        err.contains("off") && err.contains("prompt_lookup"),
        "{err}"
    );
    for (value, want) in [
        ("prompt_lookup", Speculation::PromptLookup),
        ("off", Speculation::Off),
    ] {
        let file = write(&dir, "ok.yaml", &text.replace("ngram", value));
        let loaded = config::load_agent(&file).expect(value);
        assert_eq!(loaded.agent.model.speculation, Some(want));
    }
}
