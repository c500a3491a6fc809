//! `mcp-python`, the sandbox as an MCP server, driven by our own MCP client: state across calls,
//! figures as image content, errors as `isError`, limits enforced.

mod common;

use qwen3_agent::config::McpServerSpec;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// The server with figures saved in `output_dir`, and a cell timeout that a loaded machine's
/// first numpy and matplotlib imports stay well under.
fn server(output_dir: &Path) -> McpServerSpec {
    let bin = Path::new(env!("CARGO_BIN_EXE_qwen3-agent")).with_file_name("mcp-python");
    McpServerSpec {
        command: Some(bin.display().to_string()),
        args: vec![
            "--timeout".into(),
            "30".into(),
            "--output-dir".into(),
            output_dir.display().to_string(),
        ],
        ..Default::default()
    }
}

#[test]
fn the_sandbox_serves_stateful_cells_figures_and_errors_over_mcp() {
    let output = tempfile::tempdir().unwrap();
    let (registry, failures) = common::registry(
        &[("python", server(output.path()))],
        Duration::from_secs(60),
    );
    assert!(failures.is_empty(), "{failures:?}");
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "import numpy as np\nv = np.arange(5)"}),
    );
    assert_eq!(
        (out.text.as_str(), out.is_error),
        ("Finished execution.", false)
    );
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "print(int(v.sum()))"}),
    );
    assert_eq!(out.text, "10");
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "import matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 4])\nNone"}),
    );
    assert_eq!(out.files.len(), 1, "{out:?}");
    assert_eq!(
        std::fs::read_dir(output.path()).unwrap().count(),
        1,
        "the server keeps its copy in --output-dir"
    );
    assert!(
        std::fs::read(&out.files[0])
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "raise ValueError('bad input')"}),
    );
    assert!(
        out.is_error && out.text.contains("ValueError: bad input"),
        "{out:?}"
    );
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "import time\ntime.sleep(3600)"}),
    );
    assert!(
        out.is_error && out.text.contains("timed out after 30 s"),
        "{out:?}"
    );
    let out = common::call(
        &registry,
        "code_interpreter",
        json!({"code": "print('v' in globals())"}),
    );
    assert_eq!(
        out.text, "False",
        "the timed-out session was replaced by a fresh one"
    );
}
