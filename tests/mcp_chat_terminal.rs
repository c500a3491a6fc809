//! `chat` on a terminal (a pseudo-terminal here, as a person's would be) against
//! `@modelcontextprotocol/server-everything`: a server's request for input is asked of the person,
//! form and URL, and a long call's progress is drawn as a bar.

mod common;

use common::{TOKENIZER, everything_server, scratch, write};
use qwen3_agent::config::McpServerSpec;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one expected text may take to appear (a server start, a scripted turn).
const WAIT: Duration = Duration::from_secs(60);

/// A command running on a pseudo-terminal of 120×40, and everything it has written so far.
struct Terminal {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where the next `expect` starts looking.
    seen: usize,
}

impl Terminal {
    fn spawn(mut command: Command) -> Self {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes the two descriptors it opens; the name and termios may be null.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(
            opened,
            0,
            "openpty failed: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: both descriptors were just opened and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe; the child gets the terminal as its own
        // controlling terminal, as a shell would give it.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(command);
        let master = std::fs::File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), output.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends with EIO once the child and its terminal are gone.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Terminal {
            child,
            master,
            output,
            seen: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `wanted` appears after what earlier expects matched, and returns what came
    /// before it.
    fn expect(&mut self, wanted: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            let from = self.seen.min(text.len());
            if let Some(at) = text.get(from..).and_then(|rest| rest.find(wanted)) {
                self.seen = from + at + wanted.len();
                return text[from..from + at].to_string();
            }
            assert!(
                start.elapsed() < WAIT,
                "{wanted:?} did not appear; the terminal shows:\n{}",
                &text[from..]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `line` and Enter.
    fn send(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Types `/exit` and waits for the program to end.
    fn exit(mut self) -> String {
        self.send("/exit");
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < WAIT,
                "chat did not exit:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.text()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A model call of `tool` with `arguments` (JSON), as the scripted backend's text.
fn call(tool: &str, arguments: &str) -> String {
    format!(
        "<tool_call>\\n{{\\\"name\\\": \\\"{tool}\\\", \\\"arguments\\\": {arguments}}}\\n</tool_call>"
    )
}

/// `qwen3-agent chat` on a terminal, in `dir`, with server-everything and a model that makes
/// `calls` in turn, answering "done" after each.
fn chat(dir: &Path, spec: &McpServerSpec, calls: &[String]) -> Terminal {
    let script: Vec<String> = calls
        .iter()
        .flat_map(|c| [format!("\"{c}\""), "done".to_string()])
        .collect();
    let args: Vec<String> = spec.args.iter().map(|a| format!("{a:?}")).collect();
    let agent = write(
        dir,
        "agent.yaml",
        &format!(
            "name: terminal\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [{}]\n\
             generate: {{thinking: false}}\nmcpServers:\n  everything:\n    command: {}\n    args: [{}]\n",
            script.join(", "),
            spec.command.as_deref().unwrap(),
            args.join(", ")
        ),
    );
    let mut command = Command::new(env!("CARGO_BIN_EXE_qwen3-agent"));
    command
        .current_dir(dir)
        .env("TERM", "xterm")
        .args(["chat", agent.to_str().unwrap()]);
    let mut terminal = Terminal::spawn(command);
    terminal.expect("chatting with terminal");
    terminal
}

#[test]
fn a_servers_request_for_input_is_asked_of_the_person_at_the_terminal() {
    let marker = format!("everything-terminal-elicit-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("chat-terminal", "elicit");
    let form = call("trigger-elicitation-request", "{}");
    let url = call(
        "trigger-url-elicitation",
        "{\\\"url\\\": \\\"https://example.com/sign-in\\\"}",
    );
    let mut terminal = chat(&dir, &spec, &[form.clone(), form, url]);

    terminal.send("Ask me.");
    terminal.expect("[everything] asks for input: Please provide inputs for the following fields:");
    terminal.expect("answer it? [a]ccept / [d]ecline / [c]ancel: ");
    terminal.send("a");
    for (prompt, answer) in [
        ("  name — Your full, legal name (required): ", ""),
        ("this one is required", "Ada Lovelace"),
        ("  check — Agree to the terms and conditions (y/n): ", "y"),
        ("[It was a dark and stormy night.]: ", ""),
        ("  email — ", "ada@example.com"),
        ("  homepage — ", ""),
        ("  birthdate — ", ""),
        ("(from 1 to 100) [42]: ", "500"),
        ("type a number from 1 to 100", "7"),
        ("  number — ", ""),
        ("    3) Joey", "3"),
        ("    2) Piano", "Piano, 1"),
        ("    3) Wonder Woman (hero-3)", "Wonder Woman"),
        ("    2) Salmon (fish-2)", ""),
        ("    2) Dogs (pet-2)", "2"),
    ] {
        terminal.expect(prompt);
        terminal.send(answer);
    }
    terminal.expect("User provided the requested information!");
    terminal.expect("- Name: Ada Lovelace");
    terminal.expect("- Email: ada@example.com");
    terminal.expect("- Favorite Integer: 7");
    terminal.expect("- Favorite Number: 3.14");
    terminal.expect("done");

    terminal.send("Again.");
    terminal.expect("answer it? [a]ccept / [d]ecline / [c]ancel: ");
    terminal.send("d");
    terminal.expect("User declined to provide the requested information.");
    terminal.expect("done");

    terminal.send("Sign in.");
    terminal.expect(
        "[everything] asks you to open a URL: Please open the link to complete this action.",
    );
    terminal.expect("  https://example.com/sign-in");
    terminal.send("a");
    terminal.expect("User completed the URL elicitation flow.");
    terminal.expect("done");
    let everything = terminal.exit();
    let notices: Vec<&str> = everything
        .lines()
        .filter(|line| line.contains("note: [everything] asked"))
        .collect();
    assert_eq!(notices.len(), 3, "{everything}");
    assert!(
        notices
            .iter()
            .all(|n| !n.contains("Ada") && !n.contains("ada@")),
        "notices say what was asked, never the answer: {notices:?}"
    );
    for said in [
        "note: [everything] asked for input, you answered: Please provide inputs",
        "note: [everything] asked for input, you declined: Please provide inputs",
        "note: [everything] asked you to open a URL, you accepted",
    ] {
        assert!(everything.contains(said), "{said:?} not in {everything}");
    }
}

#[test]
fn a_long_calls_progress_is_a_bar_on_the_terminal() {
    let marker = format!("everything-terminal-progress-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("chat-terminal", "progress");
    let long = call(
        "trigger-long-running-operation",
        "{\\\"duration\\\": 2, \\\"steps\\\": 4}",
    );
    let mut terminal = chat(&dir, &spec, &[long]);
    terminal.send("Work.");
    terminal.expect("[everything] 2/4 [");
    terminal.expect("50%");
    terminal.expect("Long running operation completed.");
    terminal.expect("done");
    let everything = terminal.exit();
    assert!(
        everything.contains("note: [everything] progress 4/4"),
        "the notices are still shown: {everything}"
    );
}
