//! Our `mcp-fetch` against the reference `mcp-server-fetch` (test venv, PATH without node) on pages
//! a loopback HTTP server serves: same tool schema, same output text, same errors and paging.

mod common;

use qwen3_agent::config::McpServerSpec;
use qwen3_agent::tools::ToolRegistry;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

const ARTICLE: &str = "<html><head><title>Field notes | Site</title></head><body><nav><a href='/'>Home</a> | \
<a href='/about'>About</a></nav><main><h1>Otter Facts</h1><p>Sea otters hold hands while they sleep so they do not \
drift apart.</p><p>They have the densest fur of any animal.</p></main><footer>Contact us</footer></body></html>";

/// Serves a few fixed pages on loopback; returns the base URL.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or(0);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let long = "word ".repeat(3000);
            let (status, kind, body) = match path.as_str() {
                "/article" => ("200 OK", "text/html; charset=utf-8", ARTICLE.to_string()),
                "/notes.txt" => (
                    "200 OK",
                    "text/plain",
                    "plain text notes\nsecond line\n".to_string(),
                ),
                "/long.txt" => ("200 OK", "text/plain", long),
                "/moved" => ("301 Moved Permanently", "text/html", String::new()),
                _ => (
                    "404 Not Found",
                    "text/html",
                    "<html><body>nothing</body></html>".to_string(),
                ),
            };
            let location = if path == "/moved" {
                "Location: /notes.txt\r\n"
            } else {
                ""
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{location}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = (&stream).write_all(head.as_bytes());
            let _ = (&stream).write_all(body.as_bytes());
        }
    });
    base
}

fn reference(extra: &[&str]) -> McpServerSpec {
    let mut args = vec!["-m".to_string(), "mcp_server_fetch".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    McpServerSpec {
        command: Some(common::python()),
        args,
        env: BTreeMap::from([("PATH".to_string(), json!("/usr/bin:/bin"))])
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn ours(extra: &[&str]) -> McpServerSpec {
    let bin = Path::new(env!("CARGO_BIN_EXE_qwen3-agent")).with_file_name("mcp-fetch");
    McpServerSpec {
        command: Some(bin.display().to_string()),
        args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn start(spec: McpServerSpec) -> ToolRegistry {
    let (registry, failures) = common::registry(&[("fetch", spec)], Duration::from_secs(30));
    assert!(failures.is_empty(), "{failures:?}");
    registry
}

#[test]
fn our_fetch_server_matches_the_reference_server() {
    let base = serve();
    let flags = ["--allow-private-ips", "--ignore-robots-txt"];
    let (theirs, ours_) = (start(reference(&flags)), start(ours(&flags)));
    assert_eq!(
        serde_json::to_string(&ours_.schemas()).unwrap(),
        serde_json::to_string(&theirs.schemas()).unwrap()
    );
    let cases = [
        json!({"url": format!("{base}/article")}),
        json!({"url": format!("{base}/article"), "raw": true}),
        json!({"url": format!("{base}/notes.txt")}),
        json!({"url": format!("{base}/moved")}),
        json!({"url": format!("{base}/long.txt"), "max_length": 1000}),
        json!({"url": format!("{base}/long.txt"), "max_length": 1000, "start_index": 14500}),
        json!({"url": format!("{base}/long.txt"), "start_index": 20000}),
        json!({"url": format!("{base}/missing")}),
    ];
    for args in cases {
        let (expected, got) = (
            common::call(&theirs, "fetch", args.clone()),
            common::call(&ours_, "fetch", args.clone()),
        );
        assert_eq!(
            (got.is_error, got.text.as_str()),
            (expected.is_error, expected.text.as_str()),
            "{args}"
        );
    }
}

#[test]
fn loopback_is_refused_unless_allowed() {
    let base = serve();
    let server = start(ours(&["--ignore-robots-txt"]));
    let out = common::call(&server, "fetch", json!({"url": format!("{base}/article")}));
    assert!(
        out.is_error
            && out.text.contains("is not a public address")
            && out.text.contains("--allow-private-ips"),
        "{out:?}"
    );
}
