//! What a server may ask of its client, against `@modelcontextprotocol/server-everything` (npm, installed
//! by scripts/test.sh): roots, elicitation (declined: no one can answer), progress and log
//! notifications as notices, and resources as tools the model can call.

mod common;

use common::{
    KillOnDrop, TOKENIZER, call, everything_server, free_port, python, read_jsonl, run_cli,
    run_json, scratch, settings, tool_names, wait_for_port, write,
};
use qwen3_agent::config::{ElicitationChoice, ElicitationSpec, McpServerSpec};
use qwen3_agent::tools::mcp::start_servers;
use qwen3_agent::tools::mcp::{McpSettings, ProgressReport};
use qwen3_agent::tools::sampling::{SampleQueue, Sampled};
use qwen3_agent::tools::{Notices, ToolRegistry};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registry of the one server, and the queue its notices go to.
fn everything(spec: McpServerSpec) -> (ToolRegistry, Notices) {
    started("everything", spec, settings(Duration::from_secs(30)))
}

/// A registry of the one server `name`, started with `settings`, and the queue its notices go to.
fn started(name: &str, spec: McpServerSpec, settings: McpSettings) -> (ToolRegistry, Notices) {
    let notices = settings.notices.clone();
    let servers = BTreeMap::from([(name.to_string(), spec)]);
    let started = start_servers(&servers, &settings).unwrap();
    assert!(started.failures.is_empty(), "{:?}", started.failures);
    let mut registry = ToolRegistry::new(Duration::from_secs(35));
    registry.add_source(started.source).unwrap();
    (registry, notices)
}

/// `qwen3-agent tools AGENT --call NAME` run in `dir`: its printed result and its stderr.
fn call_through_the_cli(dir: &Path, agent: &Path, tool: &str) -> (Json, String) {
    tools_command(dir, agent, &["--call", tool])
}

/// `qwen3-agent tools AGENT ARGS…` run in `dir`: its printed JSON and its stderr.
fn tools_command(dir: &Path, agent: &Path, args: &[&str]) -> (Json, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3-agent"))
        .current_dir(dir)
        .arg("tools")
        .arg(agent)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// An agent file in `dir` with the one server `spec` (a stdio server), `roots: [data]` and `extra`
/// YAML.
fn agent_with(dir: &Path, spec: &McpServerSpec, extra: &str) -> std::path::PathBuf {
    let args: Vec<Json> = spec.args.iter().map(|a| json!(a)).collect();
    write(
        dir,
        "agent.yaml",
        &format!(
            "name: features\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [done]\n\
             roots: [data]\nmcpServers:\n  everything:\n    command: {}\n    args: {}\n{extra}",
            spec.command.as_deref().unwrap(),
            Json::Array(args)
        ),
    )
}

fn directory_uri(dir: &Path) -> String {
    reqwest::Url::from_directory_path(std::fs::canonicalize(dir).unwrap())
        .unwrap()
        .to_string()
}

#[test]
fn roots_are_the_working_dir_and_the_agents_roots_and_elicitation_is_declined() {
    let marker = format!("everything-roots-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "roots");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let agent = agent_with(&dir, &spec, "");
    let (roots, _) = call_through_the_cli(&dir, &agent, "get-roots-list");
    let text = roots["text"].as_str().unwrap();
    assert_eq!(roots["is_error"], false, "{roots}");
    assert!(text.contains("(2 total)"), "{text}");
    assert!(text.contains(&directory_uri(&dir)), "{text}");
    assert!(text.contains(&directory_uri(&dir.join("data"))), "{text}");

    let (declined, stderr) = call_through_the_cli(&dir, &agent, "trigger-elicitation-request");
    assert_eq!(declined["is_error"], false, "{declined}");
    let text = declined["text"].as_str().unwrap();
    assert!(text.contains("User declined"), "{text}");
    assert!(
        stderr.contains("[everything] asked for input, declined"),
        "{stderr}"
    );
}

#[test]
fn prompts_are_listed_by_the_cli() {
    let marker = format!("everything-prompts-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "prompts");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let (prompts, stderr) = tools_command(&dir, &agent_with(&dir, &spec, ""), &["--prompts"]);
    let prompts = prompts
        .as_array()
        .unwrap_or_else(|| panic!("{prompts} {stderr}"));
    let names: Vec<&str> = prompts.iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["simple-prompt", "args-prompt", "resource-prompt"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(
        prompts.iter().all(|p| p["server"] == "everything"),
        "{prompts:?}"
    );
    let args = prompts.iter().find(|p| p["name"] == "args-prompt").unwrap();
    let arguments: Vec<&str> = args["arguments"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(arguments.contains(&"city"), "{args}");
}

#[test]
fn a_fixed_answer_is_sent_when_it_matches_the_schema_and_declined_otherwise() {
    let marker = format!("everything-elicit-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "elicit");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let answer = "elicitation:\n  action: accept\n  content: {name: Ada Lovelace, check: true}\n";
    let agent = agent_with(&dir, &spec, answer);
    let (accepted, stderr) = call_through_the_cli(&dir, &agent, "trigger-elicitation-request");
    let text = accepted["text"].as_str().unwrap();
    assert!(text.contains("- Name: Ada Lovelace"), "{text}");
    assert!(text.contains("- Agreed to terms: true"), "{text}");
    assert!(
        stderr.contains("answered with elicitation.content") && !stderr.contains("Ada"),
        "the notice says what happened, not the answer: {stderr}"
    );

    let wrong = "elicitation:\n  action: accept\n  content: {check: yes please}\n";
    let agent = agent_with(&dir, &spec, wrong);
    let (declined, stderr) = call_through_the_cli(&dir, &agent, "trigger-elicitation-request");
    assert!(
        declined["text"].as_str().unwrap().contains("User declined"),
        "{declined}"
    );
    assert!(
        stderr.contains("does not match the requested schema")
            && stderr.contains("required")
            && stderr.contains("'/check'"),
        "{stderr}"
    );

    let agent = agent_with(&dir, &spec, "elicitation: {action: cancel}\n");
    let (cancelled, _) = call_through_the_cli(&dir, &agent, "trigger-elicitation-request");
    assert!(
        cancelled["text"]
            .as_str()
            .unwrap()
            .contains("User cancelled"),
        "{cancelled}"
    );
}

#[test]
fn an_accept_without_content_is_an_error_at_its_line() {
    let dir = scratch("client-features", "bad-elicitation");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: features\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\nelicitation:\n  action: accept\n"
        ),
    );
    let text = format!("{:#}", qwen3_agent::config::load_agent(&agent).unwrap_err());
    assert!(text.contains("agent.yaml:6:3:"), "{text}");
    assert!(text.contains("needs elicitation.content"), "{text}");
}

#[test]
fn a_python_sdk_server_that_needs_input_gets_the_agents_answers_and_roots() {
    let dir = scratch("client-features", "input");
    let spec = McpServerSpec {
        command: Some(python()),
        args: vec![
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/mcp/input_server.py"
            )
            .into(),
            format!("--marker=input-{}", std::process::id()),
        ],
        ..Default::default()
    };
    let mut settings = settings(Duration::from_secs(30));
    settings.roots = vec![dir.clone()];
    settings.elicitation = ElicitationSpec {
        action: ElicitationChoice::Accept,
        content: json!({"name": "Ada"}).as_object().cloned(),
    };
    let (registry, notices) = started("input", spec.clone(), settings.clone());
    let greeted = call(&registry, "greet", json!({}));
    assert_eq!(greeted.text, "Hello, Ada!", "{greeted:?}");
    let roots = call(&registry, "show_roots", json!({}));
    assert_eq!(roots.text, directory_uri(&dir), "{roots:?}");
    let seen = notices.drain();
    assert!(
        seen.iter().any(|n| n
            == "[input] asked for input, answered with elicitation.content: What is your name?"),
        "{seen:?}"
    );

    settings.elicitation = ElicitationSpec::default();
    let (registry, _) = started("input", spec, settings);
    let declined = call(&registry, "greet", json!({}));
    assert_eq!(declined.text, "No name given (decline).", "{declined:?}");
}

/// server-everything (the script of the stdio `spec`) serving Streamable HTTP on a free port, stopped
/// when the guard drops.
fn everything_over_http(stdio: &McpServerSpec) -> (KillOnDrop, u16) {
    let port = free_port();
    let server = KillOnDrop(
        std::process::Command::new("node")
            .args([stdio.args[0].as_str(), "streamableHttp"])
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, "server-everything over Streamable HTTP");
    (server, port)
}

#[test]
fn over_streamable_http_roots_elicitation_and_resources_work_too() {
    let Some(stdio) = everything_server("unused") else {
        return;
    };
    let (_server, port) = everything_over_http(&stdio);
    let dir = scratch("client-features", "http");
    let mut settings = settings(Duration::from_secs(30));
    settings.roots = vec![dir.clone()];
    let spec = McpServerSpec {
        kind: Some("http".into()),
        url: Some(format!("http://127.0.0.1:{port}/mcp")),
        ..Default::default()
    };
    let (registry, notices) = started("everything", spec, settings);
    let roots = call(&registry, "get-roots-list", json!({}));
    assert!(roots.text.contains(&directory_uri(&dir)), "{roots:?}");
    let declined = call(&registry, "trigger-elicitation-request", json!({}));
    assert!(declined.text.contains("User declined"), "{declined:?}");
    let seen = notices.drain();
    assert!(
        seen.iter()
            .any(|n| n.starts_with("[everything] asked for input, declined")),
        "{seen:?}"
    );
    let read = call(
        &registry,
        "everything-read_resource",
        json!({"uri": "demo://resource/dynamic/text/3"}),
    );
    assert!(read.text.starts_with("Resource 3: "), "{read:?}");
}

#[test]
fn a_root_that_does_not_exist_is_an_error_at_its_line() {
    let dir = scratch("client-features", "bad-root");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: features\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\nroots:\n  - missing\n"
        ),
    );
    let error = qwen3_agent::config::load_agent(&agent).unwrap_err();
    let text = format!("{error:#}");
    assert!(text.contains("agent.yaml:5:1:"), "{text}");
    assert!(text.contains("missing is not a directory"), "{text}");
}

#[test]
fn progress_and_warnings_become_notices() {
    let marker = format!("everything-notices-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let (registry, notices) = everything(spec);
    let done = call(
        &registry,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 2}),
    );
    assert!(!done.is_error, "{done:?}");
    let seen = notices.drain();
    for step in ["[everything] progress 1/2", "[everything] progress 2/2"] {
        assert!(seen.iter().any(|n| n == step), "{step} not in {seen:?}");
    }

    let started = call(&registry, "toggle-simulated-logging", json!({}));
    assert!(!started.is_error, "{started:?}");
    // The server logs a message of a random level now and every 5 s after: wait for one at warning
    // or above, and check that nothing below warning came through on the way.
    let levels = ["warning", "error", "critical", "alert", "emergency"];
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    while Instant::now() < deadline
        && !seen.iter().any(|n: &String| {
            levels
                .iter()
                .any(|l| n.starts_with(&format!("[everything] {l} ")))
        })
    {
        std::thread::sleep(Duration::from_millis(100));
        seen.extend(notices.drain());
    }
    call(&registry, "toggle-simulated-logging", json!({}));
    let logged: Vec<&String> = seen
        .iter()
        .filter(|n| {
            levels
                .iter()
                .any(|l| n.starts_with(&format!("[everything] {l} ")))
        })
        .collect();
    assert!(!logged.is_empty(), "no warning in {seen:?}");
    // Each is the server's message for its level ("Warning-level message"; 2026.8.31 spells the
    // alert one "Alert level-message").
    assert!(
        logged.iter().all(|n| levels.iter().any(|l| {
            let own = format!("[everything] {l} {}{}", l[..1].to_uppercase(), &l[1..]);
            n.starts_with(&own) && n.contains("level")
        })),
        "{logged:?}"
    );
    for quiet in ["debug", "info", "notice"] {
        let prefix = format!("[everything] {quiet} ");
        assert!(!seen.iter().any(|n| n.starts_with(&prefix)), "{seen:?}");
    }
}

#[test]
fn progress_reaches_the_front_ends_sink_which_is_told_when_the_call_ends() {
    let marker = format!("everything-progress-sink-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let mut settings = settings(Duration::from_secs(30));
    settings.progress = Some(Arc::new(move |report| sink.lock().unwrap().push(report)));
    let (registry, notices) = started("everything", spec, settings);
    reports.lock().unwrap().clear();
    let done = call(
        &registry,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 2}),
    );
    assert!(!done.is_error, "{done:?}");
    let reports = reports.lock().unwrap().clone();
    let steps: Vec<(f64, Option<f64>)> = reports
        .iter()
        .filter_map(|r| match r {
            ProgressReport::Step {
                server,
                progress,
                total,
                ..
            } if server == "everything" => Some((*progress, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [(1.0, Some(2.0)), (2.0, Some(2.0))], "{reports:?}");
    let ProgressReport::Step { token, .. } = &reports[0] else {
        panic!("{reports:?}")
    };
    assert_eq!(
        reports.last(),
        Some(&ProgressReport::Done {
            server: "everything".into(),
            token: token.clone()
        }),
        "the call's end comes last, with its token"
    );
    assert!(
        notices
            .drain()
            .contains(&"[everything] progress 2/2".to_string()),
        "the notices stay"
    );
}

#[test]
fn a_resource_the_model_read_is_subscribed_to_and_its_updates_reported() {
    let marker = format!("everything-subscribe-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let (registry, notices) = everything(spec);
    let uri = "demo://resource/dynamic/text/2";
    let read = call(&registry, "everything-read_resource", json!({"uri": uri}));
    assert!(!read.is_error, "{read:?}");
    // The server sends an update for every subscribed resource as soon as its updates are turned
    // on, then every 5 s.
    let toggled = call(&registry, "toggle-subscriber-updates", json!({}));
    assert!(!toggled.is_error, "{toggled:?}");
    let expected =
        format!("[everything] resource updated: {uri} (everything-read_resource reads it again)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !seen.contains(&expected) {
        std::thread::sleep(Duration::from_millis(100));
        seen.extend(notices.drain());
    }
    call(&registry, "toggle-subscriber-updates", json!({}));
    assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    assert!(
        !seen
            .iter()
            .any(|n| n.contains("resource updated: demo://resource/static")),
        "only what was read is followed: {seen:?}"
    );
}

#[test]
fn resources_are_listed_and_read_and_resource_links_can_be_followed() {
    let marker = format!("everything-resources-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let (registry, _) = everything(spec);
    let names = tool_names(&registry);
    for tool in ["everything-list_resources", "everything-read_resource"] {
        assert!(names.iter().any(|n| n == tool), "{tool} not in {names:?}");
    }

    let listed = call(&registry, "everything-list_resources", json!({}));
    assert!(!listed.is_error, "{listed:?}");
    let listing: Json = serde_json::from_str(&listed.text).unwrap();
    let document = listing["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .find(|uri| uri.starts_with("demo://resource/static/document/"))
        .unwrap_or_else(|| panic!("no static document in {listing}"))
        .to_string();
    let templates: Vec<&str> = listing["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert!(
        templates.contains(&"demo://resource/dynamic/text/{resourceId}"),
        "{templates:?}"
    );
    let read = call(
        &registry,
        "everything-read_resource",
        json!({"uri": document}),
    );
    assert!(!read.is_error && !read.text.trim().is_empty(), "{read:?}");

    let links = call(&registry, "get-resource-links", json!({"count": 2}));
    assert!(!links.is_error, "{links:?}");
    let linked: Vec<&str> = links
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("[resource link: ")?.strip_suffix(']'))
        .collect();
    assert_eq!(
        linked,
        [
            "demo://resource/dynamic/blob/1",
            "demo://resource/dynamic/text/2"
        ]
    );
    let text = call(
        &registry,
        "everything-read_resource",
        json!({"uri": linked[1]}),
    );
    assert!(
        !text.is_error
            && text
                .text
                .starts_with("Resource 2: This is a plaintext resource"),
        "{text:?}"
    );
    let blob = call(
        &registry,
        "everything-read_resource",
        json!({"uri": linked[0]}),
    );
    assert!(!blob.is_error && blob.files.len() == 1, "{blob:?}");
    let bytes = std::fs::read(&blob.files[0]).unwrap();
    assert!(
        bytes.starts_with(b"Resource 1: This is a base64 blob"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    std::fs::remove_file(&blob.files[0]).unwrap();

    let unknown = call(
        &registry,
        "everything-read_resource",
        json!({"uri": "demo://resource/dynamic/text/0"}),
    );
    assert!(unknown.is_error, "{unknown:?}");
    let no_uri = call(&registry, "everything-read_resource", json!({}));
    assert!(
        no_uri.is_error && no_uri.text.contains("needs a uri"),
        "{no_uri:?}"
    );
}

/// The Python SDK server that records the calls it starts and the cancellations it receives in
/// `record`.
fn cancel_server(record: &Path) -> McpServerSpec {
    McpServerSpec {
        command: Some(python()),
        args: vec![
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/mcp/cancel_server.py"
            )
            .into(),
            format!("--record={}", record.display()),
        ],
        ..Default::default()
    }
}

/// The lines of `record` once one starts with `prefix` (polled for up to 10 s).
fn recorded(record: &Path, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = std::fs::read_to_string(record)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.iter().any(|l| l.starts_with(prefix)) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The request id of the one call `record` saw start.
fn started_id(lines: &[String]) -> String {
    let started: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("started "))
        .collect();
    assert_eq!(started.len(), 1, "{lines:?}");
    started[0].to_string()
}

#[test]
fn a_call_that_times_out_is_cancelled_on_the_server() {
    let dir = scratch("client-features", "cancel-timeout");
    let record = dir.join("record.txt");
    let mut spec = cancel_server(&record);
    spec.tool_timeouts.insert("slow".into(), 1.0);
    let (registry, _) = started("slow", spec, settings(Duration::from_secs(30)));
    let output = call(&registry, "slow", json!({"seconds": 60}));
    assert!(output.is_error, "{output:?}");
    assert!(
        output
            .text
            .contains("did not answer within 1 s; the call was cancelled"),
        "{output:?}"
    );
    let lines = recorded(&record, "cancelled ");
    let id = started_id(&lines);
    assert!(
        lines.contains(&format!("cancelled {id}: request timeout")),
        "{lines:?}"
    );
}

#[test]
fn an_interrupted_call_is_cancelled_on_the_server_and_its_result_says_so() {
    let dir = scratch("client-features", "cancel-interrupt");
    let record = dir.join("record.txt");
    let (registry, _) = started(
        "slow",
        cancel_server(&record),
        settings(Duration::from_secs(30)),
    );
    let cancel = qwen3_agent::tools::Cancel::default();
    let watched = cancel.clone();
    let calls = vec![(
        "slow".to_string(),
        json!({"seconds": 60}).as_object().unwrap().clone(),
    )];
    let running = std::thread::spawn(move || registry.dispatch_cancellable(&calls, &watched));
    let lines = recorded(&record, "started ");
    let id = started_id(&lines);
    cancel.cancel();
    let record_of_call = running.join().unwrap().remove(0);
    assert_eq!(
        record_of_call.output.text,
        "Error: slow on MCP server slow was interrupted by the user before it answered; the server \
         was told to stop (notifications/cancelled)."
    );
    let lines = recorded(&record, "cancelled ");
    assert!(
        lines.contains(&format!("cancelled {id}: interrupted by the user")),
        "{lines:?}"
    );
}

#[test]
fn prompts_are_listed_and_run_in_chat() {
    let marker = format!("everything-chat-prompts-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "chat-prompts");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let agent = agent_with(&dir, &spec, "");
    let input =
        "/prompts\n/prompt args-prompt\n/prompt everything/args-prompt city=\"New York\"\n/exit\n";
    let (stdout, stderr, ok) = run_cli(&["chat", agent.to_str().unwrap()], input);
    assert!(ok, "{stderr}");
    for line in [
        "everything/args-prompt — Arguments Prompt: A prompt with two arguments, one required and one optional",
        "    city (required): Name of the city",
        "    state",
        "everything/simple-prompt — Simple Prompt: A prompt with no arguments",
    ] {
        assert!(
            stdout.contains(&format!("{line}\n")),
            "{line:?} not in {stdout}"
        );
    }
    assert!(
        stderr.contains(
            "error: the prompt \"args-prompt\" of the MCP server everything needs the argument city; \
             it takes city (Name of the city, required), state"
        ),
        "{stderr}"
    );
    let asked = stdout
        .find("[user] What's weather in New York?\n")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        stdout[asked..].contains("done"),
        "the model answered the prompt: {stdout}"
    );
}

#[test]
fn a_task_starts_from_a_prompt_with_its_embedded_resource() {
    let marker = format!("everything-task-prompt-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "task-prompt");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    agent_with(&dir, &spec, "");
    write(
        &dir,
        "task.yaml",
        "agent: agent.yaml\nprompt_from:\n  server: everything\n  name: resource-prompt\n  \
         arguments: {resourceType: Text, resourceId: 2}\n",
    );
    let transcript = dir.join("t.jsonl");
    let result = run_json(&dir, "task.yaml", &transcript);
    assert_eq!(result["rounds"], 1, "{result}");
    let messages = result["messages"].as_array().unwrap();
    assert_eq!(
        messages[0]["content"],
        "This prompt includes the Text resource with id: 2. Please analyze the following resource:"
    );
    let resource = messages[1]["content"].as_str().unwrap();
    assert!(
        resource.starts_with("Resource 2: This is a plaintext resource"),
        "{resource}"
    );
    let call = read_jsonl(&transcript)
        .into_iter()
        .find(|l| l["event"] == "model_call")
        .unwrap();
    assert!(
        call["prompt"]
            .as_str()
            .unwrap()
            .contains("Resource 2: This is a plaintext resource"),
        "{call}"
    );

    write(
        &dir,
        "missing.yaml",
        "agent: agent.yaml\nprompt_from: {server: everything, name: args-prompt}\n",
    );
    let (_, stderr, ok) = run_cli(&["run", dir.join("missing.yaml").to_str().unwrap()], "");
    assert!(!ok);
    assert!(
        stderr.contains(
            "missing.yaml:2:1: prompt_from: the prompt \"args-prompt\" of the MCP server \
                         everything needs the argument city"
        ),
        "{stderr}"
    );
}

#[test]
fn prompt_from_is_checked_at_load_with_its_line() {
    let dir = scratch("client-features", "bad-prompt-from");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let spec = McpServerSpec {
        command: Some("unused".into()),
        ..Default::default()
    };
    agent_with(&dir, &spec, "");
    let error = |task: &str| {
        let path = write(&dir, "task.yaml", task);
        format!("{:#}", qwen3_agent::config::load_task(&path).unwrap_err())
    };
    let unknown = error("agent: agent.yaml\nprompt_from:\n  server: other\n  name: p\n");
    assert!(
        unknown.contains(
            "task.yaml:3:3: prompt_from.server names \"other\", which is not an enabled \
                          MCP server of the agent; the agent's servers: everything"
        ),
        "{unknown}"
    );
    let both = error("agent: agent.yaml\nprompt: hi\nprompt_from: {server: everything, name: p}\n");
    assert!(
        both.contains(
            "task.yaml:3:1: give one of prompt, prompts, messages or prompt_from, not several"
        ),
        "{both}"
    );
    let nested = error(
        "agent: agent.yaml\nprompt_from:\n  server: everything\n  name: p\n  arguments:\n    city: [a, b]\n",
    );
    assert!(
        nested.contains("task.yaml:6:5: prompt_from.arguments.city must be a string"),
        "{nested}"
    );
    let typo = error("agent: agent.yaml\nprompt_from: {server: everything, nam: p}\n");
    assert!(typo.contains("task.yaml:2:"), "{typo}");
}

/// What a sampling request asked: (max_tokens, system, stop, messages as JSON).
type Asked = (usize, Option<String>, Vec<String>, Json);

/// Answers the first request on `queue` with `text` (waiting up to 30 s for it) and returns it.
fn answer_one(queue: SampleQueue, text: &str) -> std::thread::JoinHandle<Option<Asked>> {
    let text = text.to_string();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(request) = queue.take() {
                let ask = &request.ask;
                let asked = (
                    ask.max_tokens,
                    ask.system.clone(),
                    ask.stop.clone(),
                    serde_json::to_value(&ask.messages).unwrap(),
                );
                request.answer(Ok(Sampled { text, cut: false }));
                return Some(asked);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    })
}

#[test]
fn a_python_sdk_server_samples_the_model_within_a_call_capped() {
    let spec = McpServerSpec {
        command: Some(python()),
        args: vec![
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/mcp/input_server.py"
            )
            .into(),
            format!("--marker=sampling-{}", std::process::id()),
        ],
        ..Default::default()
    };
    let queue = SampleQueue::default();
    let mut settings = settings(Duration::from_secs(30));
    settings.sampling = Some(queue.clone());
    let (registry, notices) = started("input", spec, settings);
    let model = answer_one(queue, "Blue");
    let said = call(&registry, "colour", json!({}));
    assert_eq!(
        said.text, "The model said: Blue (model qwen3-agent, endTurn)",
        "{said:?}"
    );
    let (max_tokens, system, stop, messages) = model.join().unwrap().expect("no request came");
    assert_eq!(max_tokens, 1024, "5000 asked, capped by the default");
    assert_eq!(system.as_deref(), Some("One word."));
    assert_eq!(stop, ["END"]);
    assert_eq!(
        messages,
        json!([{"role": "user", "content": "Name a colour."}])
    );
    let seen = notices.drain();
    assert!(
        seen.iter().any(|n| n
            == "[input] asked the agent's model for a completion (1 messages, up to 1024 tokens)"),
        "{seen:?}"
    );
}

#[test]
fn sampling_is_declared_only_where_the_model_answers_and_the_entry_allows() {
    let marker = format!("everything-no-sampling-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let offered = |spec: McpServerSpec, queue: Option<SampleQueue>| {
        let mut settings = settings(Duration::from_secs(30));
        settings.sampling = queue;
        let (registry, _) = started("everything", spec, settings);
        tool_names(&registry).contains(&"trigger-sampling-request".to_string())
    };
    assert!(offered(spec.clone(), Some(SampleQueue::default())));
    assert!(!offered(spec.clone(), None), "no model: not declared");
    let refused = McpServerSpec {
        sampling: Some(false),
        ..spec
    };
    assert!(!offered(refused, Some(SampleQueue::default())));
}

#[test]
fn server_everything_samples_the_agents_model_during_a_run_and_the_transcript_logs_it() {
    let marker = format!("everything-sampling-run-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "sampling-run");
    let call = r#"<tool_call>\n{\"name\": \"trigger-sampling-request\", \"arguments\": {\"prompt\": \"Say hi\", \"maxTokens\": 5000}}\n</tool_call>"#;
    let args: Vec<Json> = spec.args.iter().map(|a| json!(a)).collect();
    write(
        &dir,
        "agent.yaml",
        &format!(
            "name: sampler\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\n  script: [\"{call}\", \
             \"Hi from the model\", \"done\"]\ngenerate: {{thinking: false}}\nmcpServers:\n  everything:\n    \
             command: node\n    args: {}\n    sampling_max_tokens: 64\n",
            Json::Array(args)
        ),
    );
    write(&dir, "task.yaml", "agent: agent.yaml\nprompt: Ask.\n");
    let transcript = dir.join("t.jsonl");
    let result = run_json(&dir, "task.yaml", &transcript);
    assert_eq!(result["content"], "done", "{result}");
    let lines = read_jsonl(&transcript);
    let tool = lines.iter().find(|l| l["event"] == "tool_call").unwrap();
    let text = tool["result"].as_str().unwrap();
    assert!(
        tool["is_error"] == false
            && text.contains("\"text\": \"Hi from the model\"")
            && text.contains("\"model\": \"qwen3-agent\""),
        "{tool}"
    );
    let sampling = lines
        .iter()
        .find(|l| l["event"] == "sampling")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(sampling["server"], "everything");
    assert_eq!(
        sampling["max_tokens"], 64,
        "5000 asked, capped by the entry"
    );
    assert_eq!(sampling["system"], "You are a helpful test server.");
    assert_eq!(
        sampling["messages"],
        json!([{"role": "user", "content": "Resource trigger-sampling-request context: Say hi"}])
    );
    assert_eq!(sampling["content"], "Hi from the model");
    let temperature = sampling["temperature"].as_f64().unwrap();
    assert!((temperature - 0.7).abs() < 1e-6, "{sampling}");
    assert!(
        sampling["prompt"]
            .as_str()
            .unwrap()
            .starts_with("<|im_start|>system\nYou are a helpful test server.<|im_end|>"),
        "{sampling}"
    );
}

/// A fixture server of tests/fixtures/mcp run with `args`.
fn fixture(script: &str, args: &[String]) -> McpServerSpec {
    McpServerSpec {
        command: Some(python()),
        args: std::iter::once(format!(
            "{}/tests/fixtures/mcp/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .chain(args.iter().cloned())
        .collect(),
        ..Default::default()
    }
}

#[test]
fn a_2025_server_that_declares_logging_is_sent_the_entrys_log_level() {
    let dir = scratch("client-features", "set-level");
    let record = dir.join("record.jsonl");
    let args = |logging: bool| {
        let mut args = vec![
            format!("--marker=set-level-{}", std::process::id()),
            format!("--record={}", record.display()),
        ];
        if logging {
            args.push("--logging".into());
        }
        args
    };
    let set_levels = || -> Vec<Json> {
        std::fs::read_to_string(&record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).unwrap())
            .filter(|e| e["method"] == "logging/setLevel")
            .collect()
    };
    let mut spec = fixture("fault_server.py", &args(true));
    spec.log_level = Some(qwen3_agent::config::LogLevel::Info);
    drop(started(
        "fault",
        spec.clone(),
        settings(Duration::from_secs(30)),
    ));
    let sent = set_levels();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["params"]["level"], "info");

    std::fs::remove_file(&record).unwrap();
    spec.args = fixture("fault_server.py", &args(false)).args;
    drop(started("fault", spec, settings(Duration::from_secs(30))));
    assert!(
        set_levels().is_empty(),
        "a server without the logging capability is not asked"
    );
}

#[test]
fn a_2026_server_sends_the_log_levels_each_request_opts_into() {
    let logged = |level: Option<qwen3_agent::config::LogLevel>| {
        let mut spec = fixture(
            "log_server.py",
            &[format!("--marker=log-{}", std::process::id())],
        );
        spec.log_level = level;
        let (registry, notices) = started("log", spec, settings(Duration::from_secs(30)));
        let done = call(&registry, "chatter", json!({}));
        assert_eq!(done.text, "logged", "{done:?}");
        // Notifications may trail the result: wait for the error message, the last one sent.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline && !seen.iter().any(|n: &String| n.contains("an error")) {
            std::thread::sleep(Duration::from_millis(20));
            seen.extend(notices.drain());
        }
        seen.retain(|n| n.contains(" message"));
        seen
    };
    assert_eq!(
        logged(None),
        [
            "[log] warning a warning message",
            "[log] error an error message"
        ],
        "warning and above by default"
    );
    assert_eq!(
        logged(Some(qwen3_agent::config::LogLevel::Info)),
        [
            "[log] info an info message",
            "[log] warning a warning message",
            "[log] error an error message"
        ]
    );
}

#[test]
fn server_entry_client_settings_are_checked_at_their_line() {
    let dir = scratch("client-features", "bad-entry");
    let agent = |entry: &str| {
        let path = write(
            &dir,
            "agent.yaml",
            &format!(
                "name: features\nmodel:\n  backend: scripted\n  path: {TOKENIZER}\nmcpServers:\n  s:\n    \
                 command: x\n{entry}"
            ),
        );
        format!("{:#}", qwen3_agent::config::load_agent(&path).unwrap_err())
    };
    let level = agent("    log_level: loud\n");
    assert!(
        level.contains("agent.yaml:8:16:") && level.contains("warning"),
        "{level}"
    );
    let tokens = agent("    sampling_max_tokens: 0\n");
    assert!(
        tokens.contains("agent.yaml:8:5: mcpServers.s.sampling_max_tokens must be at least 1"),
        "{tokens}"
    );
}

/// The demo model's own completion of server-everything's sampling request (its system prompt and
/// message, thinking off, the request's temperature 0.7 with the agent's other settings and seed),
/// through `generate`: what the agent's model must have answered.
fn demo_model_completes(dir: &Path, prompt: &str, max_tokens: usize) -> String {
    let messages = write(
        dir,
        "sampling.json",
        &json!([
            {"role": "system", "content": "You are a helpful test server."},
            {"role": "user", "content": format!("Resource trigger-sampling-request context: {prompt}")}
        ])
        .to_string(),
    );
    let max_tokens = max_tokens.to_string();
    let (out, err, ok) = run_cli(
        &[
            "generate",
            "--model",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models/qwen3-agent-demo"),
            "--messages",
            messages.to_str().unwrap(),
            "--no-thinking",
            "--device",
            "cpu",
            "--max-new-tokens",
            &max_tokens,
            "--temperature",
            "0.7",
            "--top-k",
            "20",
            "--top-p",
            "0.8",
            "--min-p",
            "0",
            "--presence-penalty",
            "0",
            "--seed",
            "7",
            "--json",
        ],
        "",
    );
    assert!(ok, "{err}");
    let generated: Json = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    generated["content"].as_str().unwrap().to_string()
}

#[test]
fn tools_call_answers_server_everythings_sampling_with_the_demo_model_over_stdio_and_http() {
    let marker = format!("everything-demo-sampling-{}", std::process::id());
    let Some(stdio) = everything_server(&marker) else {
        return;
    };
    let (_http, port) = everything_over_http(&stdio);
    let dir = scratch("client-features", "demo-sampling");
    let expected = demo_model_completes(&dir, "Name a colour.", 24);
    assert!(!expected.trim().is_empty(), "the demo model said nothing");
    let stdio_entry = format!(
        "command: node\n    args: {}",
        Json::Array(stdio.args.iter().map(|a| json!(a)).collect())
    );
    let http_entry = format!("type: http\n    url: http://127.0.0.1:{port}/mcp");
    for entry in [stdio_entry, http_entry] {
        let agent = write(
            &dir,
            "agent.yaml",
            &format!(
                "name: sampler\nmodel:\n  path: {}/models/qwen3-agent-demo\n  device: cpu\n  \
                 context_length: 4096\ngenerate: {{top_k: 20, top_p: 0.8, min_p: 0, presence_penalty: 0, \
                 repetition_penalty: 1, seed: 7}}\nmcpServers:\n  everything:\n    {entry}\n    \
                 sampling_max_tokens: 24\n",
                env!("CARGO_MANIFEST_DIR")
            ),
        );
        let (result, stderr) = tools_command(
            &dir,
            &agent,
            &[
                "--call",
                "trigger-sampling-request",
                "--args",
                r#"{"prompt": "Name a colour.", "maxTokens": 500}"#,
            ],
        );
        assert_eq!(result["is_error"], false, "{entry}: {result}");
        let text = result["text"].as_str().unwrap();
        let reply: Json = serde_json::from_str(
            text.strip_prefix("LLM sampling result: \n")
                .unwrap_or_else(|| panic!("{text}")),
        )
        .unwrap();
        assert_eq!(
            reply["content"]["text"],
            expected.as_str(),
            "{entry}: {reply}"
        );
        assert_eq!(reply["model"], "qwen3-agent", "{reply}");
        assert!(
            stderr.contains(
                "[everything] asked the agent's model for a completion (1 messages, up to 24 tokens)"
            ),
            "{entry}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("the model answered everything: {expected}")),
            "{entry}: {stderr}"
        );
    }
}

#[test]
fn tools_call_loads_the_agents_model_only_when_a_server_asks_for_a_completion() {
    let marker = format!("everything-lazy-model-{}", std::process::id());
    let Some(spec) = everything_server(&marker) else {
        return;
    };
    let dir = scratch("client-features", "lazy-model");
    let agent = write(
        &dir,
        "agent.yaml",
        &format!(
            "name: unloadable\nmodel:\n  path: no-such-model\n  device: cpu\nmcpServers:\n  everything:\n    \
             command: node\n    args: {}\n",
            Json::Array(spec.args.iter().map(|a| json!(a)).collect())
        ),
    );
    let (echoed, _) = tools_command(
        &dir,
        &agent,
        &["--call", "echo", "--args", r#"{"message": "hi"}"#],
    );
    assert_eq!(echoed["is_error"], false, "no model needed: {echoed}");
    assert_eq!(echoed["text"], "Echo: hi");
    let (sampled, stderr) = tools_command(
        &dir,
        &agent,
        &[
            "--call",
            "trigger-sampling-request",
            "--args",
            r#"{"prompt": "hi"}"#,
        ],
    );
    assert_eq!(sampled["is_error"], true, "{sampled}");
    assert!(
        stderr.contains("the model did not answer everything: the agent's model failed:")
            && stderr.contains("no-such-model"),
        "{stderr}"
    );
}
