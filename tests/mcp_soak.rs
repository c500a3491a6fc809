//! 1000 sequential MCP calls leave no extra processes or file descriptors. In its own test binary: file
//! descriptors are per process, and other tests starting servers in parallel would change the count.

use qwen3_agent::config::McpServerSpec;
use qwen3_agent::tools::mcp::{start_servers, McpSettings};
use qwen3_agent::tools::ToolRegistry;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn python() -> String {
    let path = std::env::var("QWEN3_AGENT_TEST_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_string());
    assert!(Path::new(&path).exists(), "{path} is missing: run scripts/test.sh, which creates the test venv");
    path
}

fn fault_server(marker: &str, extra: &[&str]) -> McpServerSpec {
    let mut args = vec![concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp/fault_server.py").to_string(), format!("--marker={marker}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    McpServerSpec { command: Some(python()), args, ..Default::default() }
}

fn settings(call_timeout: Duration) -> McpSettings {
    McpSettings {
        connect_timeout: Duration::from_secs(30),
        call_timeout,
        max_output_chars: 20_000,
        output_dir: std::env::temp_dir().join("qwen3-agent-mcp-test"),
    }
}

fn registry(servers: &[(&str, McpServerSpec)], call_timeout: Duration) -> (ToolRegistry, Vec<String>) {
    let map: BTreeMap<String, McpServerSpec> = servers.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
    let (tools, failures) = start_servers(&map, &settings(call_timeout)).unwrap();
    let mut registry = ToolRegistry::new(call_timeout + Duration::from_secs(5));
    for tool in tools {
        registry.register(tool).unwrap();
    }
    (registry, failures)
}

fn call(registry: &ToolRegistry, name: &str, args: Json) -> qwen3_agent::tools::ToolOutput {
    let Json::Object(args) = args else { panic!() };
    registry.dispatch(&[(name.to_string(), args)]).remove(0).output
}

fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

#[test]
fn a_thousand_calls_leave_no_processes_or_descriptors_behind() {
    let marker = format!("many-{}", std::process::id());
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let (registry, _) = registry(&[("fault", fault_server(&marker, &[]))], Duration::from_secs(10));
    call(&registry, "echo", json!({"text": "warm"}));
    let (before, processes) = (fds(), processes_with(&marker));
    for i in 0..1000 {
        assert_eq!(call(&registry, "echo", json!({"text": i.to_string()})).text, i.to_string());
    }
    assert!(fds() <= before + 2, "descriptors grew from {before} to {}", fds());
    assert_eq!(processes_with(&marker), processes);
    drop(registry);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_with(&marker), 0);
}

