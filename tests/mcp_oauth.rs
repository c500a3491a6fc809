//! OAuth 2.1 sign-in to a Streamable HTTP server, against an OAuth-protected MCP server built on the
//! official Python SDK's auth support (tests/fixtures/mcp/oauth_server.py): discovery, dynamic client
//! registration and PKCE through `qwen3-agent mcp login` (the test plays the browser by following the
//! authorization URL's redirect to the loopback listener), a call with the token, its refresh after
//! expiry, logout; no token is ever printed.

mod common;

use common::{KillOnDrop, TOKENIZER, free_port, python, scratch, wait_for_port, write};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The scripted model's call of the fixture's tool (YAML double-quoted).
const WHOAMI: &str = r#"<tool_call>\n{\"name\": \"whoami\", \"arguments\": {}}\n</tool_call>"#;

/// Seconds an access token of the fixture lasts.
const LIFETIME: u64 = 4;

/// `qwen3-agent ARGS…` in `dir`, with `config` as the user's config dir.
fn cli(dir: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", config)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `whoami` through `tools --call`: the access token's number the server saw.
fn whoami(dir: &Path, config: &Path, agent: &str, shown: &mut String) -> u64 {
    let out = cli(dir, config, &["tools", agent, "--call", "whoami"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    shown.push_str(&stdout);
    shown.push_str(&stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Json = serde_json::from_str(&stdout).unwrap();
    let said = result["text"].as_str().unwrap();
    assert!(said.starts_with("signed in as "), "{result}");
    said.rsplit('#').next().unwrap().parse().unwrap()
}

/// The token files under `config`.
fn token_files(config: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(config.join("qwen3-agent/mcp-oauth")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn sign_in_call_refresh_and_sign_out_never_showing_a_token() {
    let dir = scratch("oauth", "flow");
    let config = dir.join("config");
    let record = dir.join("issued.txt");
    let port = free_port();
    let _server = KillOnDrop(
        Command::new(python())
            .args([
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/mcp/oauth_server.py"
                ),
                &port.to_string(),
                record.to_str().unwrap(),
                &LIFETIME.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "the OAuth fixture");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: oauth\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [\"{WHOAMI}\", done]\n\
             mcpServers:\n  secure:\n    url: http://127.0.0.1:{port}/mcp\n    required: true\n"
        ),
    );
    let agent = agent.to_str().unwrap();
    let mut shown = String::new();

    let before = cli(&dir, &config, &["tools", agent, "--call", "whoami"]);
    let stderr = text(&before.stderr);
    assert!(!before.status.success(), "{stderr}");
    assert!(
        stderr.contains("qwen3-agent mcp login secure AGENT.yaml"),
        "the error says how to sign in: {stderr}"
    );

    let mut login = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(&dir)
        .env("XDG_CONFIG_HOME", &config)
        .args(["mcp", "login", "secure", agent])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(login.stderr.take().unwrap());
    let authorize = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "login ended early: {shown}"
        );
        shown.push_str(&line);
        let prefix = format!("http://127.0.0.1:{port}/authorize?");
        if line.starts_with(&prefix) {
            break line.trim().to_string();
        }
    };
    assert!(
        authorize.contains("code_challenge_method=S256")
            && authorize.contains("redirect_uri=http%3A%2F%2F127.0.0.1"),
        "PKCE and a loopback redirect: {authorize}"
    );
    // The browser: the authorization server approves at once and redirects to the listener.
    let page = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(&authorize)
        .send()
        .unwrap();
    assert!(page.status().is_success(), "{page:?}");
    assert!(page.text().unwrap().contains("Signed in"));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    login
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut shown)
        .unwrap();
    shown.push_str(&rest);
    assert!(login.wait().unwrap().success(), "{shown}");
    assert!(rest.contains("signed in to secure"), "{rest}");

    let files = token_files(&config);
    assert_eq!(files.len(), 1, "{files:?}");
    let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is the user's alone");

    let first = whoami(&dir, &config, agent, &mut shown);
    std::thread::sleep(Duration::from_secs(LIFETIME + 1));
    let second = whoami(&dir, &config, agent, &mut shown);
    assert!(
        second > first,
        "the expired token was refreshed: #{first} then #{second}"
    );

    // A run's transcript holds the call and its result, not the token.
    write(&dir, "task.yaml", "agent: agent.yaml\nprompt: Who am I?\n");
    let transcript = dir.join("t.jsonl");
    let run = cli(
        &dir,
        &config,
        &[
            "run",
            "task.yaml",
            "--json",
            "--transcript",
            transcript.to_str().unwrap(),
        ],
    );
    shown.push_str(&text(&run.stdout));
    shown.push_str(&text(&run.stderr));
    assert!(run.status.success(), "{}", text(&run.stderr));
    let lines = std::fs::read_to_string(&transcript).unwrap();
    assert!(lines.contains("signed in as"), "{lines}");
    shown.push_str(&lines);

    let out = cli(&dir, &config, &["mcp", "logout", "secure", agent]);
    shown.push_str(&text(&out.stderr));
    assert!(out.status.success() && text(&out.stderr).contains("signed out of secure"));
    assert!(token_files(&config).is_empty());
    let after = cli(&dir, &config, &["tools", agent, "--call", "whoami"]);
    assert!(!after.status.success());
    shown.push_str(&text(&after.stderr));

    let issued = std::fs::read_to_string(&record).unwrap();
    assert!(issued.lines().count() >= 4, "{issued}");
    for token in issued.lines() {
        assert!(!shown.contains(token), "a token was shown: {shown}");
    }
}
