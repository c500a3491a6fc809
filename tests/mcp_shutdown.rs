//! `kill_all_servers` ends every stdio server's process group at once — servers that ignore SIGTERM and
//! stdin closing, their grandchildren, a server in the middle of a call — and no server starts again.
//! In its own test binary: it ends every server of the process, which would break tests running beside it.
//! Also the backstop for when we are SIGKILLed ourselves: the server dies with us (its grandchildren,
//! out of reach of `PR_SET_PDEATHSIG`, are not covered).

mod common;

use common::{call, fault_server, pids_with, processes_end, processes_with, registry};
use qwen3_agent::tools::mcp::kill_all_servers;
use serde_json::json;
use std::time::Duration;

#[test]
fn kill_all_servers_ends_every_process_group_at_once() {
    let marker = format!("stubborn-{}", std::process::id());
    let (registry, failures) = registry(
        &[
            ("one", fault_server(&marker, &["--stubborn"])),
            ("two", fault_server(&marker, &["--stubborn"])),
        ],
        Duration::from_secs(60),
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        processes_with(&marker),
        4,
        "two servers, each with a grandchild"
    );
    std::thread::scope(|scope| {
        let long_call = scope.spawn(|| call(&registry, "one-hang", json!({})));
        // The call is in flight once the server has it; the hang tool never answers.
        std::thread::sleep(Duration::from_millis(300));
        kill_all_servers();
        assert!(
            processes_end(&marker, Duration::from_secs(2)),
            "{} processes left 2 s after kill_all_servers",
            processes_with(&marker)
        );
        let ended = long_call.join().unwrap();
        assert!(
            ended.is_error && ended.text.contains("the program is ending"),
            "the call in flight ends with an error and its server is not started again: {ended:?}"
        );
    });
    let after = call(&registry, "two-echo", json!({"text": "hi"}));
    assert!(after.is_error, "{after:?}");
    assert_eq!(processes_with(&marker), 0, "no server was started again");
}

#[test]
fn a_server_dies_with_us_when_we_are_killed() {
    let marker = format!("orphan-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("qwen3-agent-{marker}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Stubborn: it would outlive its stdin closing, so only the death signal can end it.
    let record = dir.join("record.jsonl");
    let server = fault_server(
        &marker,
        &["--stubborn", &format!("--record={}", record.display())],
    );
    let config = dir.join("mcp.json");
    let servers =
        json!({"mcpServers": {"fault": {"command": server.command, "args": server.args}}});
    std::fs::write(&config, servers.to_string()).unwrap();
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .args(["tools", "--mcp-config"])
        .arg(&config)
        .args(["--call", "hang"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server_pids = || -> Vec<u32> {
        pids_with(&marker)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("fault_server.py"))
            })
            .collect()
    };
    // Killed mid-call: once the server has the call, it has nothing more to write to us.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&record).is_ok_and(|r| r.contains("\"hang\"")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server_pids().len(), 1);
    cli.kill().unwrap();
    cli.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !server_pids().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = server_pids();
    // The grandchild is orphaned by design of this test: clean it up before asserting.
    for pid in pids_with(&marker) {
        // SAFETY: kill(2) on a process of this test's own fixture.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "the server outlived us: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
