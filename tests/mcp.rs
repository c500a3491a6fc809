//! MCP against real servers: the reference `mcp-server-time` (pip, in the venv scripts/test.sh makes),
//! `@modelcontextprotocol/server-everything` (npm, installed by scripts/test.sh), a server on the official
//! Python SDK (tests/fixtures/mcp/sdk_server.py) and a misbehaving server written for these tests
//! (tests/fixtures/mcp/fault_server.py).

mod common;

use common::{
    KillOnDrop, call, everything_server, fault_server, free_port, pids_with, processes_end,
    processes_with, python, registry, run_json, sdk_server, time_server, tool_names, wait_for_port,
};
use qwen3_agent::config::{InheritEnv, McpServerSpec, load_mcp_config};
use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};

#[test]
fn reference_time_server_lists_and_calls() {
    let (registry, failures) = registry(&[("time", time_server())], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(tool_names(&registry), ["get_current_time", "convert_time"]);
    let schemas = registry.schemas();
    let timezone = &schemas[0]["function"]["parameters"]["properties"]["timezone"];
    assert!(
        timezone["description"]
            .as_str()
            .unwrap()
            .contains("Europe/Paris"),
        "--local-timezone reaches the schema"
    );
    let now = call(
        &registry,
        "get_current_time",
        json!({"timezone": "Asia/Tokyo"}),
    );
    assert!(!now.is_error);
    let parsed: Json = serde_json::from_str(&now.text).unwrap();
    assert_eq!(parsed["timezone"], "Asia/Tokyo");
    assert!(parsed["datetime"].as_str().unwrap().ends_with("+09:00"));
    let converted = call(
        &registry,
        "convert_time",
        json!({"source_timezone": "Asia/Tokyo", "time": "09:30", "target_timezone": "Asia/Kolkata"}),
    );
    let parsed: Json = serde_json::from_str(&converted.text).unwrap();
    assert_eq!(parsed["time_difference"], "-3.5h");
    let wrong_type = call(&registry, "get_current_time", json!({"timezone": 9}));
    assert!(
        wrong_type.is_error && wrong_type.text.contains("do not match its schema"),
        "{wrong_type:?}"
    );
    let missing = call(&registry, "convert_time", json!({"time": "09:30"}));
    assert!(
        missing.is_error && missing.text.contains("source_timezone"),
        "{missing:?}"
    );
    let bad = call(
        &registry,
        "get_current_time",
        json!({"timezone": "Mars/Olympus"}),
    );
    assert!(bad.is_error && bad.text.contains("Mars/Olympus"), "{bad:?}");
}

#[test]
fn faults_give_clear_errors_and_the_agent_keeps_working() {
    let marker = format!("fault-{}", std::process::id());
    let servers = [
        ("fault", fault_server(&marker, &[])),
        ("early", fault_server(&marker, &["--exit-at-start"])),
        (
            "gone",
            McpServerSpec {
                command: Some("/nonexistent/mcp-server".into()),
                ..Default::default()
            },
        ),
    ];
    {
        let (registry, failures) = registry(&servers, Duration::from_secs(2));
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(
            failures.iter().any(|f| f.contains("\"early\""))
                && failures.iter().any(|f| f.contains("is it installed"))
        );
        assert_eq!(call(&registry, "echo", json!({"text": "hi"})).text, "hi");

        let crashed = call(&registry, "crash", json!({}));
        assert!(
            crashed.is_error && crashed.text.contains("restarted"),
            "{crashed:?}"
        );
        assert_eq!(
            call(&registry, "echo", json!({"text": "again"})).text,
            "again",
            "works after the restart"
        );

        let hung = call(&registry, "hang", json!({}));
        assert!(
            hung.is_error
                && hung.text.contains("within 2 s")
                && hung.text.contains("cancelled")
                && hung.text.contains("restarted"),
            "the server's own timeout fired, not the registry's: {hung:?}"
        );
        assert_eq!(
            call(&registry, "echo", json!({"text": "still"})).text,
            "still"
        );

        let big = call(&registry, "big", json!({}));
        assert!(
            big.text.len() < 30_000
                && big
                    .text
                    .contains("output cut: the tool returned 10485760 characters")
        );
        let huge = call(&registry, "huge", json!({}));
        assert!(
            !huge.is_error
                && huge.text.len() < 30_000
                && huge
                    .text
                    .contains("output cut: the tool returned 20971520 characters"),
            "a 20 MB result arrives and is capped: {}",
            &huge.text[huge.text.len().saturating_sub(300)..]
        );
        assert_eq!(call(&registry, "garbage", json!({})).text, "after garbage");
    }
    assert!(
        processes_end(&marker, Duration::from_secs(2)),
        "server processes (or their grandchildren) survived: {}",
        processes_with(&marker)
    );
}

#[test]
fn pasted_configs_load() {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-mcp-configs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let claude = dir.join("claude_desktop_config.json");
    std::fs::write(
        &claude,
        r#"{
  "mcpServers": {
    "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=America/New_York"]},
    "fetch": {"command": "uvx", "args": ["mcp-server-fetch"], "env": {"HTTPS_PROXY": "${PROXY:-}"}}
  }
}"#,
    )
    .unwrap();
    let vscode = dir.join("mcp.json");
    std::fs::write(&vscode, r#"{"servers": {"time": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]},
        "remote": {"type": "http", "url": "https://example.invalid/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}}}"#).unwrap();
    let claude = load_mcp_config(&claude).unwrap();
    assert_eq!(
        claude["time"].args,
        ["mcp-server-time", "--local-timezone=America/New_York"]
    );
    let vscode = load_mcp_config(&vscode).unwrap();
    assert_eq!(vscode["remote"].kind.as_deref(), Some("http"));
    let typo = dir.join("typo.json");
    std::fs::write(&typo, "{\"mcpServers\": {\"t\": {\"comand\": \"x\"}}}").unwrap();
    let err = format!("{:#}", load_mcp_config(&typo).unwrap_err());
    assert!(
        err.contains("typo.json:1:") && err.contains("comand"),
        "{err}"
    );
    let inherit = dir.join("inherit.json");
    std::fs::write(
        &inherit,
        r#"{"mcpServers": {"a": {"command": "x", "inherit_env": ["TOKEN"]},
        "b": {"command": "x", "inheritEnv": true}, "c": {"command": "x"}}}"#,
    )
    .unwrap();
    let inherit = load_mcp_config(&inherit).unwrap();
    assert_eq!(
        inherit["a"].inherit_env,
        InheritEnv::Names(vec!["TOKEN".into()])
    );
    assert_eq!(inherit["b"].inherit_env, InheritEnv::All(true));
    assert_eq!(inherit["c"].inherit_env, InheritEnv::All(false));
    let bad = dir.join("bad-inherit.json");
    std::fs::write(
        &bad,
        r#"{"mcpServers": {"a": {"command": "x", "inherit_env": "TOKEN"}}}"#,
    )
    .unwrap();
    let err = format!("{:#}", load_mcp_config(&bad).unwrap_err());
    assert!(
        err.contains("bad-inherit.json:1:") && err.contains("a list of environment variable names"),
        "{err}"
    );
}

#[test]
fn an_agent_calls_the_reference_time_server_through_the_loop() {
    let dir = std::env::temp_dir().join(format!("qwen3-agent-mcp-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let call = r#"<think>\nThe user wants Tokyo time.\n</think>\n\n<tool_call>\n{\"name\": \"get_current_time\", \"arguments\": {\"timezone\": \"Asia/Tokyo\"}}\n</tool_call>"#;
    let agent = format!(
        "name: time\nmodel:\n  backend: scripted\n  path: {}/tests/fixtures/qwen3-tokenizer\n  script:\n    - \"{call}\"\n    - \"It is morning in Tokyo.\"\nmcpServers:\n  time:\n    command: {}\n    args: [-m, mcp_server_time, --local-timezone=Europe/Paris]\n    inherit_env: [LANG]\n",
        env!("CARGO_MANIFEST_DIR"),
        python()
    );
    std::fs::write(dir.join("agent.yaml"), agent).unwrap();
    std::fs::write(dir.join("task.yaml"), "agent: agent.yaml\nprompt: What time is it in Tokyo?\nexpect:\n  tools_called: [get_current_time]\n").unwrap();
    let transcript = dir.join("t.jsonl");
    let result = run_json(&dir, "task.yaml", &transcript);
    assert_eq!(result["rounds"], 2);
    let tool_message = &result["messages"][2];
    assert_eq!(tool_message["role"], "tool");
    assert!(
        tool_message["content"]
            .as_str()
            .unwrap()
            .contains("\"timezone\": \"Asia/Tokyo\""),
        "{tool_message}"
    );
    let lines = std::fs::read_to_string(&transcript).unwrap();
    let second_prompt = lines
        .lines()
        .filter(|l| l.contains("\"model_call\""))
        .nth(1)
        .unwrap();
    assert!(
        second_prompt.contains("<tool_response>\\n{\\n  \\\"timezone\\\": \\\"Asia/Tokyo\\\""),
        "{second_prompt}"
    );
    assert!(lines.contains("\"event\":\"tool_call\""));
}

#[test]
fn a_changed_tool_list_is_fetched_again_before_the_next_turn() {
    let marker = format!("grow-{}", std::process::id());
    let (mut registry, failures) = registry(
        &[("fault", fault_server(&marker, &[]))],
        Duration::from_secs(10),
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(!tool_names(&registry).contains(&"extra".to_string()));
    assert!(registry.refresh().is_empty());
    assert_eq!(call(&registry, "grow", json!({})).text, "grown");
    assert!(registry.refresh().is_empty());
    assert!(
        tool_names(&registry).contains(&"extra".to_string()),
        "{:?}",
        tool_names(&registry)
    );
    assert_eq!(call(&registry, "extra", json!({})).text, "extra works");
}

#[test]
fn a_refresh_keeps_the_tools_that_did_not_change() {
    use qwen3_agent::tools::ToolSource;
    let marker = format!("keep-{}", std::process::id());
    let servers = [("fault".to_string(), fault_server(&marker, &[]))].into();
    let started = qwen3_agent::tools::mcp::start_servers(
        &servers,
        &common::settings(Duration::from_secs(10)),
    )
    .unwrap();
    let source = started.source;
    let address = |tools: &[std::sync::Arc<dyn qwen3_agent::tools::Tool>], name: &str| {
        let tool = tools.iter().find(|t| t.name() == name).expect(name);
        std::sync::Arc::as_ptr(tool) as *const ()
    };
    let before = source.tools();
    assert!(source.changed_tools().is_none(), "nothing changed yet");
    let Json::Object(args) = json!({}) else {
        unreachable!()
    };
    assert_eq!(address(&before, "grow"), address(&source.tools(), "grow"));
    assert_eq!(
        before
            .iter()
            .find(|t| t.name() == "grow")
            .unwrap()
            .call(&args)
            .text,
        "grown"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        if let Some(tools) = source.changed_tools() {
            break tools;
        }
        assert!(
            Instant::now() < deadline,
            "tools/list_changed never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(after.iter().any(|t| t.name() == "extra"));
    assert_eq!(
        address(&before, "grow"),
        address(&after, "grow"),
        "an unchanged tool is reused, not rebuilt"
    );
}

#[test]
fn streamable_http_server_with_a_bearer_token() {
    let port = free_port();
    let token = format!("token-{}", std::process::id());
    // Never holding the harness's stdout: an orphaned fixture holding that pipe made `cargo test` wait
    // for it forever after a failed assertion.
    let _server = KillOnDrop(
        std::process::Command::new(python())
            .args([
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/mcp/http_server.py"
                ),
                &port.to_string(),
                &token,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}/mcp");
    wait_for_port(port, "the HTTP fixture");
    // SAFETY: set once, before any thread of this test reads it; other tests do not use this name.
    unsafe { std::env::set_var("QWEN3_AGENT_TEST_TOKEN", &token) };
    let spec = |header: &str| McpServerSpec {
        kind: Some("http".into()),
        url: Some(url.clone()),
        headers: serde_json::from_value(json!({ "Authorization": header })).unwrap(),
        ..Default::default()
    };
    {
        let (mut registry, failures) = registry(
            &[("remote", spec("Bearer ${QWEN3_AGENT_TEST_TOKEN}"))],
            Duration::from_secs(20),
        );
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(tool_names(&registry), ["add", "shout", "grow"]);
        let sum = call(&registry, "add", json!({"a": 2, "b": 40}));
        assert!(!sum.is_error && sum.text.contains("42"), "{sum:?}");
        assert_eq!(call(&registry, "shout", json!({"text": "hi"})).text, "HI");
        let wrong = call(&registry, "add", json!({"a": "two", "b": 40}));
        assert!(
            wrong.is_error && wrong.text.contains("do not match its schema"),
            "{wrong:?}"
        );
        assert_eq!(call(&registry, "grow", json!({})).text, "grown");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            registry.refresh();
            if registry
                .schemas()
                .iter()
                .any(|s| s["function"]["name"] == "extra")
            {
                break;
            }
            assert!(Instant::now() < deadline, "the list change never arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(call(&registry, "extra", json!({})).text, "extra works");
    }
    let (_, failures) = registry(&[("remote", spec("Bearer wrong"))], Duration::from_secs(20));
    assert!(
        failures.len() == 1 && failures[0].contains("\"remote\""),
        "a rejected token is reported: {failures:?}"
    );
    let sse = McpServerSpec {
        kind: Some("sse".into()),
        url: Some(url.clone()),
        ..Default::default()
    };
    let (_, failures) = registry(&[("old", sse)], Duration::from_secs(5));
    assert!(
        failures.len() == 1 && failures[0].contains("type: http"),
        "{failures:?}"
    );
}

#[test]
fn a_tool_timeout_overrides_the_server_timeout() {
    let marker = format!("tool-timeout-{}", std::process::id());
    let mut spec = fault_server(&marker, &[]);
    spec.timeout = Some(30.0);
    spec.tool_timeouts.insert("hang".into(), 1.0);
    let (registry, failures) = registry(&[("fault", spec)], Duration::from_secs(60));
    assert!(failures.is_empty(), "{failures:?}");
    let hung = call(&registry, "hang", json!({}));
    assert!(
        hung.is_error && hung.text.contains("within 1 s"),
        "{hung:?}"
    );
}

/// The one process whose command line holds `marker`.
fn only_pid(marker: &str) -> u32 {
    let pids = pids_with(marker);
    assert_eq!(pids.len(), 1, "{pids:?}");
    pids[0]
}

#[test]
fn a_json_rpc_error_reply_is_a_tool_error_and_keeps_the_server() {
    let marker = format!("sdk-error-{}", std::process::id());
    let (registry, failures) = registry(&[("sdk", sdk_server(&marker))], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    let pid = only_pid(&marker);
    // More than the restarts that would disable a crashing server: replies must not count.
    for _ in 0..5 {
        let reply = call(&registry, "check_date", json!({"date": "tomorrow"}));
        assert!(
            reply.is_error
                && reply.text.contains("JSON-RPC error -32602")
                && reply.text.contains("invalid date 'tomorrow'")
                && !reply.text.contains("restarted"),
            "{reply:?}"
        );
    }
    assert_eq!(only_pid(&marker), pid, "the server was not restarted");
    assert_eq!(call(&registry, "ping", json!({})).text, "pong");
    assert_eq!(
        call(&registry, "check_date", json!({"date": "2026-01-31"})).text,
        "ok"
    );
}

#[test]
fn server_everything_tool_errors_keep_the_server_and_concurrent_images_get_their_own_files() {
    let marker = format!("everything-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let (registry, failures) = registry(&[("everything", spec)], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    let pid = only_pid(&marker);
    let thrown = call(
        &registry,
        "gzip-file-as-resource",
        json!({"data": "ftp://example.invalid/file"}),
    );
    assert!(
        thrown.is_error && thrown.text.contains("Unsupported URL protocol"),
        "{thrown:?}"
    );
    assert_eq!(only_pid(&marker), pid, "the server was not restarted");
    let Json::Object(no_args) = json!({}) else {
        unreachable!()
    };
    let calls: Vec<_> = (0..8)
        .map(|_| ("get-tiny-image".to_string(), no_args.clone()))
        .collect();
    let mut files = Vec::new();
    for record in registry.dispatch(&calls) {
        assert!(!record.output.is_error, "{:?}", record.output);
        assert_eq!(record.output.files.len(), 1, "{:?}", record.output);
        files.extend(record.output.files);
    }
    let distinct: std::collections::HashSet<_> = files.iter().collect();
    assert_eq!(distinct.len(), 8, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{file} is not the PNG sent");
        std::fs::remove_file(file).unwrap();
    }
}

/// The fixture's record file: one JSON value per line.
fn recorded(path: &std::path::Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_timed_out_call_is_cancelled_by_its_request_id() {
    let marker = format!("cancel-{}", std::process::id());
    let record = std::env::temp_dir().join(format!("qwen3-agent-{marker}.jsonl"));
    let _ = std::fs::remove_file(&record);
    let mut spec = fault_server(&marker, &[&format!("--record={}", record.display())]);
    spec.tool_timeouts.insert("hang".into(), 1.0);
    let (registry, failures) = registry(&[("fault", spec)], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    let hung = call(&registry, "hang", json!({}));
    assert!(
        hung.is_error && hung.text.contains("within 1 s") && hung.text.contains("cancelled"),
        "{hung:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let (id, cancelled) = loop {
        let entries = recorded(&record);
        let id = entries.iter().find_map(|e| e.get("hang").cloned());
        let cancelled = entries
            .iter()
            .find(|e| e["method"] == "notifications/cancelled")
            .cloned();
        if let (Some(id), Some(cancelled)) = (id, cancelled) {
            break (id, cancelled);
        }
        assert!(
            Instant::now() < deadline,
            "no cancellation arrived: {:?}",
            recorded(&record)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(cancelled["params"]["requestId"], id, "{cancelled}");
    std::fs::remove_file(&record).unwrap();
}

#[test]
fn calls_that_fail_together_restart_the_server_once() {
    let marker = format!("gather-{}", std::process::id());
    let record = std::env::temp_dir().join(format!("qwen3-agent-{marker}.jsonl"));
    let _ = std::fs::remove_file(&record);
    let spec = fault_server(&marker, &[&format!("--record={}", record.display())]);
    let (registry, failures) = registry(&[("fault", spec)], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    let Json::Object(args) = json!({"n": 3}) else {
        unreachable!()
    };
    let calls: Vec<_> = (0..3)
        .map(|_| ("gather".to_string(), args.clone()))
        .collect();
    let outputs: Vec<_> = registry
        .dispatch(&calls)
        .into_iter()
        .map(|r| r.output)
        .collect();
    assert!(outputs.iter().all(|o| o.is_error), "{outputs:?}");
    let restarted = |needle: &str| outputs.iter().filter(|o| o.text.contains(needle)).count();
    assert_eq!(restarted("The server was restarted;"), 1, "{outputs:?}");
    assert_eq!(restarted("restarted for another call"), 2, "{outputs:?}");
    let starts = recorded(&record)
        .iter()
        .filter(|e| e.get("start").is_some())
        .count();
    assert_eq!(starts, 2, "one start and one restart");
    assert_eq!(call(&registry, "echo", json!({"text": "on"})).text, "on");
    std::fs::remove_file(&record).unwrap();
}
