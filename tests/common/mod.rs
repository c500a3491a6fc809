//! Helpers shared by the test binaries. Each binary uses a subset, hence the allow.
#![allow(dead_code)]

pub mod openai_server;

use qwen3_agent::config::McpServerSpec;
use qwen3_agent::tools::ToolRegistry;
use qwen3_agent::tools::mcp::{McpSettings, start_servers};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Qwen3 tokenizer files: enough of a model directory for the scripted backend.
pub const TOKENIZER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/qwen3-tokenizer"
);

/// Runs the qwen3-agent binary with `args` and `stdin` as all its input: (stdout, stderr, success).
pub fn run_cli(args: &[&str], stdin: &str) -> (String, String, bool) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

/// An empty scratch dir for one test (`label` names the test binary, `name` the test).
pub fn scratch(label: &str, name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("qwen3-agent-{label}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The JSON values of a JSON-lines file (a transcript), in order.
pub fn read_jsonl(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

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

/// A server on the official Python SDK (tests/fixtures/mcp/sdk_server.py), `marker` on its command line.
pub fn sdk_server(marker: &str) -> McpServerSpec {
    McpServerSpec {
        command: Some(python()),
        args: vec![
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/mcp/sdk_server.py"
            )
            .into(),
            format!("--marker={marker}"),
        ],
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
        notices: Default::default(),
        forward_stderr: false,
        roots: Vec::new(),
        elicitation: Default::default(),
        person: None,
        progress: None,
        sampling: None,
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
    pids_with(marker).len()
}

/// The ids of the processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let entry = e.ok()?;
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(marker)
                .then_some(pid)
        })
        .collect()
}

/// Polls until no process's command line contains `marker`; false if some are left after `deadline`.
pub fn processes_end(marker: &str, deadline: Duration) -> bool {
    let end = std::time::Instant::now() + deadline;
    while std::time::Instant::now() < end {
        if processes_with(marker) == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    processes_with(marker) == 0
}

/// `@modelcontextprotocol/server-everything` (the MCP reference test server, from npm: scripts/test.sh
/// installs it under tests/.npm) over stdio, with `marker` on its command line so tests can find its
/// process. None, said loudly, when node is not installed; a missing package is a failure.
pub fn everything_server(marker: &str) -> Option<McpServerSpec> {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: node is not installed, so the tests against @modelcontextprotocol/server-everything did not run"
        );
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/.npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    );
    assert!(
        Path::new(script).exists(),
        "{script} is missing: run scripts/test.sh, which installs it with npm"
    );
    Some(McpServerSpec {
        command: Some("node".into()),
        args: vec![script.into(), "stdio".into(), marker.into()],
        ..Default::default()
    })
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

/// A child process killed (and reaped) on drop, panics included, so a failed assertion never leaves a
/// fixture holding the harness's pipes (`cargo test` would wait for it forever).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A local TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls until something listens on `port`; panics naming `what` after 20 s.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}
