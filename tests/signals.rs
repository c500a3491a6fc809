//! SIGINT and SIGTERM during a long MCP call, on a stdio server that ignores both and EOF and has a
//! grandchild: `run` and `tools --call` leave no process behind, say why they stopped and exit with the
//! signal's code; `chat` ends on SIGTERM the same way, and its first Ctrl-C stops only the turn.
//! "Within 2 s" is a polling deadline for the processes to be gone, not a timing measurement.

mod common;

use common::{TOKENIZER, processes_with, python, read_jsonl};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/signals/stubborn_server.py"
);

/// A scratch dir with an agent whose script calls the stubborn server's `slow` tool; returns the dir,
/// the process marker and the file the server creates when the call arrives.
fn setup(name: &str) -> (PathBuf, String, PathBuf) {
    let dir = common::scratch("signals", name);
    let marker = format!("signal-test-{}-{name}", std::process::id());
    let ready = dir.join("call-started");
    let call = "<tool_call>\n{\"name\": \"slow\", \"arguments\": {}}\n</tool_call>";
    std::fs::write(
        dir.join("agent.yaml"),
        format!(
            "name: stubborn\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [{call:?}, \"Done.\"]\n\
             generate: {{thinking: false}}\nmcpServers:\n  stubborn:\n    command: {}\n    args: [{SERVER}, \
             \"--marker={marker}\", \"--ready={}\"]\n",
            python(),
            ready.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("task.yaml"),
        "agent: agent.yaml\nprompt: Call the slow tool.\n",
    )
    .unwrap();
    (dir, marker, ready)
}

fn start(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls until `done` holds or `limit` passes; returns whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Waits for the server's call to be in flight (its grandchild up too), sends `signal`, and checks
/// that every server process is gone within 2 s and that the command exits with `code`. Returns the
/// command's stderr.
fn interrupt_call(mut child: Child, marker: &str, ready: &Path, signal: i32, code: i32) -> String {
    let in_flight = wait_until(Duration::from_secs(60), || {
        ready.exists() && processes_with(marker) == 2
    });
    if !in_flight {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "the call never started:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    send(&child, signal);
    let gone = wait_until(Duration::from_secs(2), || processes_with(marker) == 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        gone,
        "{} server processes still alive 2 s after the signal\n{stderr}",
        processes_with(marker)
    );
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

#[test]
fn sigint_during_a_long_call_of_run_kills_the_servers_and_ends_the_transcript() {
    let (dir, marker, ready) = setup("run-int");
    let transcript = dir.join("t.jsonl");
    let child = start(
        &dir,
        &[
            "run",
            "task.yaml",
            "--json",
            "--transcript",
            transcript.to_str().unwrap(),
        ],
    );
    let stderr = interrupt_call(child, &marker, &ready, libc::SIGINT, 130);
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    let lines = read_jsonl(&transcript);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"run_start"));
    let tool_call = lines.iter().find(|l| l["event"] == "tool_call").unwrap();
    assert_eq!(tool_call["name"], "slow");
    // Abandoned ("interrupted") or failed because its server was killed: an error either way, and
    // no further model call.
    assert_eq!(tool_call["is_error"], true, "{tool_call}");
    let end = lines.last().unwrap();
    assert_eq!(end["event"], "run_end", "{lines:?}");
    assert_eq!(end["stop_reason"], "interrupted");
    assert_eq!(end["signal"], "SIGINT");
    assert_eq!(end["rounds"], 1, "the model was called once, then the call");
}

#[test]
fn sigterm_during_a_long_call_of_run_exits_143() {
    let (dir, marker, ready) = setup("run-term");
    let transcript = dir.join("t.jsonl");
    let child = start(
        &dir,
        &[
            "run",
            "task.yaml",
            "--quiet",
            "--transcript",
            transcript.to_str().unwrap(),
        ],
    );
    interrupt_call(child, &marker, &ready, libc::SIGTERM, 143);
    let end = read_jsonl(&transcript).pop().unwrap();
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["signal"], "SIGTERM");
}

#[test]
fn sigint_during_several_runs_stops_them_and_ends_the_transcript_of_each_that_started() {
    let (dir, marker, ready) = setup("run-many");
    std::fs::write(
        dir.join("many.yaml"),
        "agent: agent.yaml\nprompts: [Call the slow tool., Call it again.]\n",
    )
    .unwrap();
    // A scripted agent answers its runs one after another: the first is in its call, the second
    // waits.
    let child = start(
        &dir,
        &["run", "many.yaml", "--json", "--transcript", "t.jsonl"],
    );
    let stderr = interrupt_call(child, &marker, &ready, libc::SIGINT, 130);
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
    let end = read_jsonl(&dir.join("t-1.jsonl")).pop().unwrap();
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["stop_reason"], "interrupted");
    assert_eq!(end["label"], "many.yaml#1");
    assert!(
        !dir.join("t-2.jsonl").exists(),
        "the second run never started"
    );
}

#[test]
fn sigint_during_tools_call_kills_the_servers_and_exits_130() {
    let (dir, marker, ready) = setup("tools");
    let child = start(&dir, &["tools", "agent.yaml", "--call", "slow"]);
    let stderr = interrupt_call(child, &marker, &ready, libc::SIGINT, 130);
    assert!(stderr.contains("stopped by SIGINT"), "{stderr}");
}

#[test]
fn sigterm_during_a_chat_tool_call_ends_chat_and_its_servers() {
    let (dir, marker, ready) = setup("chat");
    let mut child = start(&dir, &["chat", "agent.yaml"]);
    use std::io::Write;
    // stdin stays open: chat is mid-turn, not at end of input.
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"Call the slow tool.\n")
        .unwrap();
    interrupt_call(child, &marker, &ready, libc::SIGTERM, 143);
}

#[test]
fn in_chat_the_first_ctrl_c_stops_the_turn_and_ctrl_c_at_the_prompt_quits() {
    let (dir, marker, ready) = setup("chat-int");
    let mut child = start(&dir, &["chat", "agent.yaml"]);
    use std::io::{Read, Write};
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stdout.take().unwrap();
    let shown = stdout.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            shown
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"Call the slow tool.\n")
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || ready.exists()
            && processes_with(&marker) == 2),
        "the call never started"
    );
    send(&child, libc::SIGINT);
    // The call's result, the notice, the end of the turn, the next prompt: the server was sent
    // notifications/cancelled (it ignores it, but the call ends with it).
    let cancelled = "note: interrupted: the tool calls were cancelled\n\n\n> ";
    assert!(
        wait_until(Duration::from_secs(10), || stdout
            .lock()
            .unwrap()
            .ends_with(cancelled)),
        "the turn did not stop: {:?}",
        stdout.lock().unwrap()
    );
    assert!(
        stdout
            .lock()
            .unwrap()
            .contains("interrupted by the user before it answered; the server was told to stop"),
        "{:?}",
        stdout.lock().unwrap()
    );
    assert!(child.try_wait().unwrap().is_none(), "chat went on");
    send(&child, libc::SIGINT);
    let gone = wait_until(Duration::from_secs(2), || processes_with(&marker) == 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(gone, "{} server processes left", processes_with(&marker));
    assert_eq!(status.code(), Some(130));
}
