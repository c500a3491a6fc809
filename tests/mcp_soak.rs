//! 1000 sequential MCP calls leave no extra processes or file descriptors. In its own test binary: file
//! descriptors are per process, and other tests starting servers in parallel would change the count.

mod common;

use common::{call, fault_server, processes_with, registry};
use serde_json::json;
use std::time::Duration;

#[test]
fn a_thousand_calls_leave_no_processes_or_descriptors_behind() {
    let marker = format!("many-{}", std::process::id());
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let (registry, _) = registry(
        &[("fault", fault_server(&marker, &[]))],
        Duration::from_secs(10),
    );
    call(&registry, "echo", json!({"text": "warm"}));
    let (before, processes) = (fds(), processes_with(&marker));
    for i in 0..1000 {
        assert_eq!(
            call(&registry, "echo", json!({"text": i.to_string()})).text,
            i.to_string()
        );
    }
    assert!(
        fds() <= before + 2,
        "descriptors grew from {before} to {}",
        fds()
    );
    assert_eq!(processes_with(&marker), processes);
    drop(registry);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_with(&marker), 0);
}
