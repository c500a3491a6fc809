//! Our `mcp-time` against the reference `mcp-server-time` (from the test venv) on the same inputs:
//! the same tools as rendered for the model, the same output text, the same errors.

mod common;

use qwen3_agent::config::McpServerSpec;
use qwen3_agent::tools::ToolRegistry;
use serde_json::{Value as Json, json};
use std::path::Path;
use std::time::Duration;

fn ours() -> McpServerSpec {
    let bin = Path::new(env!("CARGO_BIN_EXE_qwen3-agent")).with_file_name("mcp-time");
    McpServerSpec {
        command: Some(bin.display().to_string()),
        args: vec!["--local-timezone=Europe/Paris".into()],
        ..Default::default()
    }
}

fn start(spec: McpServerSpec) -> ToolRegistry {
    let (registry, failures) = common::registry(&[("time", spec)], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    registry
}

#[test]
fn our_time_server_matches_the_reference_server() {
    let (reference, ours) = (start(common::time_server()), start(ours()));
    assert_eq!(
        serde_json::to_string(&ours.schemas()).unwrap(),
        serde_json::to_string(&reference.schemas()).unwrap()
    );
    let cases = [
        (
            "convert_time",
            json!({"source_timezone": "Asia/Tokyo", "time": "09:30", "target_timezone": "America/New_York"}),
        ),
        (
            "convert_time",
            json!({"source_timezone": "Asia/Kathmandu", "time": "9:05", "target_timezone": "UTC"}),
        ),
        (
            "convert_time",
            json!({"source_timezone": "UTC", "time": "23:59", "target_timezone": "Asia/Kolkata"}),
        ),
        (
            "convert_time",
            json!({"source_timezone": "Europe/Paris", "time": "25:00", "target_timezone": "UTC"}),
        ),
        (
            "convert_time",
            json!({"source_timezone": "Europe/Paris", "time": "9:3x", "target_timezone": "UTC"}),
        ),
        (
            "convert_time",
            json!({"source_timezone": "Mars/Olympus", "time": "10:00", "target_timezone": "UTC"}),
        ),
        ("get_current_time", json!({"timezone": "europe/warsaw"})),
        ("get_current_time", json!({"timezone": "Not/AZone"})),
    ];
    for (tool, args) in cases {
        let (expected, got) = (
            common::call(&reference, tool, args.clone()),
            common::call(&ours, tool, args.clone()),
        );
        assert_eq!(
            (got.is_error, got.text.as_str()),
            (expected.is_error, expected.text.as_str()),
            "{tool} {args}"
        );
    }
    for zone in [
        "Asia/Tokyo",
        "America/Sao_Paulo",
        "Europe/London",
        "UTC",
        "Australia/Adelaide",
    ] {
        let args = json!({"timezone": zone});
        let expected: Json =
            serde_json::from_str(&common::call(&reference, "get_current_time", args.clone()).text)
                .unwrap();
        let got: Json =
            serde_json::from_str(&common::call(&ours, "get_current_time", args).text).unwrap();
        assert_eq!(
            (&got["timezone"], &got["day_of_week"], &got["is_dst"]),
            (
                &expected["timezone"],
                &expected["day_of_week"],
                &expected["is_dst"]
            )
        );
        let (a, b) = (
            got["datetime"].as_str().unwrap(),
            expected["datetime"].as_str().unwrap(),
        );
        assert_eq!(
            (a.len(), &a[19..], &a[..13]),
            (b.len(), &b[19..], &b[..13]),
            "same offset, same hour: {a} vs {b}"
        );
    }
}
