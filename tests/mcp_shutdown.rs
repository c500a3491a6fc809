//! `kill_all_servers` ends every stdio server's process group at once — servers that ignore SIGTERM and
//! stdin closing, their grandchildren, a server in the middle of a call — and no server starts again.
//! In its own test binary: it ends every server of the process, which would break tests running beside it.

mod common;

use common::{call, fault_server, processes_end, processes_with, registry};
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
