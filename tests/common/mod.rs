//! Helpers shared by the MCP and real-tool test binaries. Each binary uses a subset, hence the allow.
#![allow(dead_code)]

pub mod openai_server;

use qwen3_agent::config::McpServerSpec;
use qwen3_agent::tools::ToolRegistry;
use qwen3_agent::tools::mcp::{McpSettings, start_servers};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub fn python() -> String {
    let path = std::env::var("QWEN3_AGENT_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_string());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: run scripts/test.sh, which creates the test venv"
    );
    path
}

pub fn fault_server(marker: &str, extra: &[&str]) -> McpServerSpec {
    let mut args = vec![
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mcp/fault_server.py"
        )
        .to_string(),
        format!("--marker={marker}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    McpServerSpec {
        command: Some(python()),
        args,
        ..Default::default()
    }
}

pub fn time_server() -> McpServerSpec {
    McpServerSpec {
        command: Some(python()),
        args: vec![
            "-m".into(),
            "mcp_server_time".into(),
            "--local-timezone=Europe/Paris".into(),
        ],
        ..Default::default()
    }
}

pub fn settings(call_timeout: Duration) -> McpSettings {
    McpSettings {
        connect_timeout: Duration::from_secs(30),
        call_timeout,
        max_output_chars: 20_000,
        max_message_bytes: 64 << 20,
        output_dir: std::env::temp_dir().join("qwen3-agent-mcp-test"),
    }
}

pub fn registry(
    servers: &[(&str, McpServerSpec)],
    call_timeout: Duration,
) -> (ToolRegistry, Vec<String>) {
    let map: BTreeMap<String, McpServerSpec> = servers
        .iter()
        .map(|(n, s)| (n.to_string(), s.clone()))
        .collect();
    let started = start_servers(&map, &settings(call_timeout)).unwrap();
    let mut registry = ToolRegistry::new(call_timeout + Duration::from_secs(5));
    registry.add_source(started.source).unwrap();
    (registry, started.failures)
}

pub fn call(registry: &ToolRegistry, name: &str, args: Json) -> qwen3_agent::tools::ToolOutput {
    let Json::Object(args) = args else { panic!() };
    registry
        .dispatch(&[(name.to_string(), args)])
        .remove(0)
        .output
}

pub fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

/// The tool names a registry offers the model, in its order.
pub fn tool_names(registry: &ToolRegistry) -> Vec<String> {
    registry
        .schemas()
        .iter()
        .map(|s| s["function"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `qwen3-agent run TASK --json --transcript TRANSCRIPT` in `dir`, asserts that it succeeded and
/// returns its JSON result.
pub fn run_json(dir: &Path, task: &str, transcript: &Path) -> Json {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(dir)
        .args(["run", task, "--json", "--transcript"])
        .arg(transcript)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
