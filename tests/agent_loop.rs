//! The agent loop on the scripted backend (raw model outputs through the real template and parser),
//! with tools defined here. Asserts on the exact prompts the model would have read.

use qwen3_agent::agent::{Agent, AgentEvent, StopReason};
use qwen3_agent::backend::ScriptedBackend;
use qwen3_agent::chat::{ChatTemplate, Message};
use qwen3_agent::config::GenerateSpec;
use qwen3_agent::tools::{Tool, ToolOutput, ToolRegistry};
use serde_json::{Map, Value as Json, json};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A tool for these tests: answers "<city>: 16:00". With `after`, it answers only once the call for that
/// city has finished (or gives up after 10 s with an error): results then prove the calls overlapped and
/// that results keep call order even when calls finish out of order, without timing anything.
struct CityTime {
    schema: Json,
    finished: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl CityTime {
    fn new() -> Arc<Self> {
        Arc::new(CityTime {
            schema: json!({"type": "object", "properties": {"city": {"type": "string"}, "after": {"type": "string"}}, "required": ["city"]}),
            finished: Arc::default(),
        })
    }

    fn wait_for(&self, city: &str) -> bool {
        let (finished, changed) = &*self.finished;
        let guard = finished.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, Duration::from_secs(10), |done| {
                !done.iter().any(|c| c == city)
            })
            .unwrap();
        guard.iter().any(|c| c == city)
    }
}

impl Tool for CityTime {
    fn name(&self) -> &str {
        "city_time"
    }
    fn description(&self) -> &str {
        "Current hour in a city"
    }
    fn parameters(&self) -> &Json {
        &self.schema
    }
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        if let Some(other) = arguments.get("after").and_then(Json::as_str)
            && !self.wait_for(other)
        {
            return ToolOutput::error(format!("the call for {other} never ran alongside this one"));
        }
        let output = match arguments.get("city").and_then(Json::as_str) {
            Some("Atlantis") => ToolOutput::error("unknown city: Atlantis"),
            Some(city) => ToolOutput::ok(format!("{city}: 16:00")),
            None => ToolOutput::error("city is required"),
        };
        if let Some(city) = arguments.get("city").and_then(Json::as_str) {
            let (finished, changed) = &*self.finished;
            finished.lock().unwrap().push(city.to_string());
            changed.notify_all();
        }
        output
    }
}

struct Hang;
impl Tool for Hang {
    fn name(&self) -> &str {
        "hang"
    }
    fn description(&self) -> &str {
        "Never answers"
    }
    fn parameters(&self) -> &Json {
        static SCHEMA: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        SCHEMA.get_or_init(|| json!({"type": "object", "properties": {}}))
    }
    fn call(&self, _: &Map<String, Json>) -> ToolOutput {
        std::thread::sleep(Duration::from_secs(30));
        ToolOutput::ok("too late")
    }
}

fn template() -> ChatTemplate {
    ChatTemplate::from_model_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer"),
    )
    .unwrap()
}

fn agent(script: &[&str], generate: GenerateSpec, max_rounds: usize, timeout: Duration) -> Agent {
    let mut tools = ToolRegistry::new(timeout);
    tools.register(CityTime::new()).unwrap();
    tools.register(Arc::new(Hang)).unwrap();
    let backend = ScriptedBackend::new(template(), script.iter().map(|s| s.to_string()).collect());
    Agent::new(
        Box::new(backend),
        tools,
        generate,
        Some("You are helpful.".into()),
        max_rounds,
    )
}

/// Runs and returns (result, prompts sent, notices).
fn run(
    agent: &mut Agent,
    input: Vec<Message>,
) -> (qwen3_agent::agent::RunResult, Vec<String>, Vec<String>) {
    let (mut prompts, mut notices) = (Vec::new(), Vec::new());
    let result = agent
        .run(input, &mut |event| match event {
            AgentEvent::ModelCall { response, .. } => {
                prompts.push(response.prompt_text.clone().unwrap())
            }
            AgentEvent::Notice(text) => notices.push(text.to_string()),
            _ => {}
        })
        .unwrap();
    (result, prompts, notices)
}

fn call(city: &str) -> String {
    format!(
        "<tool_call>\n{{\"name\": \"city_time\", \"arguments\": {{\"city\": \"{city}\"}}}}\n</tool_call>"
    )
}

#[test]
fn parallel_calls_run_concurrently_and_results_keep_call_order() {
    // Tokyo answers only after Paris has finished: run one after the other, Tokyo would fail.
    let tokyo = "<tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Tokyo\", \"after\": \"Paris\"}}\n</tool_call>";
    let round1 = format!(
        "<think>\nI need both cities.\n</think>\n\n{tokyo}\n{}",
        call("Paris")
    );
    let mut agent = agent(
        &[
            &round1,
            "<think>\nBoth known.\n</think>\n\nTokyo and Paris: 16:00.",
        ],
        GenerateSpec::default(),
        4,
        Duration::from_secs(30),
    );
    let (result, prompts, _) = run(&mut agent, vec![Message::user("Time in Tokyo and Paris?")]);
    assert_eq!(result.stop_reason, StopReason::Answer);
    assert_eq!(result.rounds, 2);
    assert_eq!(result.content, "Tokyo and Paris: 16:00.");
    assert_eq!(result.reasoning_content.as_deref(), Some("Both known."));
    // The second prompt: the call round with its thinking (it follows the last user query), both calls,
    // and both results in call order, wrapped as the template expects.
    let second = &prompts[1];
    assert!(
        second.starts_with("<|im_start|>system\nYou are helpful.\n\n# Tools"),
        "{second}"
    );
    assert!(second.ends_with(
        "<|im_start|>user\nTime in Tokyo and Paris?<|im_end|>\n<|im_start|>assistant\n<think>\nI need both cities.\n</think>\n\n\
         <tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Tokyo\", \"after\": \"Paris\"}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n\
         <|im_start|>user\n<tool_response>\nTokyo: 16:00\n</tool_response>\n<tool_response>\nParis: 16:00\n</tool_response><|im_end|>\n\
         <|im_start|>assistant\n"
    ), "{second}");
}

#[test]
fn earlier_thinking_never_reaches_the_next_prompt() {
    let mut agent = agent(
        &[
            "<think>\nsecret plan one\n</think>\n\nFirst answer.",
            "<think>\nplan two\n</think>\n\nSecond answer.",
        ],
        GenerateSpec::default(),
        4,
        Duration::from_secs(5),
    );
    let (first, _, _) = run(&mut agent, vec![Message::user("one")]);
    let mut history = first.messages.clone();
    history.push(Message::user("two"));
    let (_, prompts, _) = run(&mut agent, history);
    assert!(!prompts[0].contains("secret plan one"), "{}", prompts[0]);
    assert!(
        prompts[0].contains("<|im_start|>assistant\nFirst answer.<|im_end|>"),
        "{}",
        prompts[0]
    );
}

#[test]
fn a_malformed_call_is_fed_back_and_the_model_recovers() {
    let bad = "<tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Tokyo\"\n</tool_call> and then <tool_call>{\"arguments\": {}}</tool_call>";
    let mut agent = agent(
        &[bad, &call("Tokyo"), "Tokyo: 16:00."],
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        5,
        Duration::from_secs(5),
    );
    let (result, prompts, _) = run(&mut agent, vec![Message::user("Tokyo?")]);
    assert_eq!(result.rounds, 3);
    assert_eq!(result.content, "Tokyo: 16:00.");
    let feedback = &prompts[1];
    assert!(
        feedback.contains("<tool_response>\nError: invalid tool call"),
        "{feedback}"
    );
    assert!(
        feedback.contains("no \\\"name\\\"") || feedback.contains("no \"name\""),
        "{feedback}"
    );
    assert!(prompts[2].contains("<tool_response>\nTokyo: 16:00\n</tool_response>"));
}

#[test]
fn unknown_tools_errors_and_timeouts_become_results_for_the_model() {
    let round1 = "<tool_call>\n{\"name\": \"weather\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Atlantis\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"hang\", \"arguments\": {}}\n</tool_call>";
    let mut agent = agent(
        &[round1, "Sorry."],
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        3,
        Duration::from_millis(300),
    );
    // The hung call's result says the registry gave up on it: it did not hold the agent.
    let (result, _, _) = run(&mut agent, vec![Message::user("?")]);
    let tool_texts: Vec<&str> = result
        .messages
        .iter()
        .filter_map(|m| {
            if let Message::Tool { content, .. } = m {
                Some(content.as_str())
            } else {
                None
            }
        })
        .collect();
    assert!(
        tool_texts[0].contains("no tool named \"weather\"")
            && tool_texts[0].contains("city_time, hang")
    );
    assert_eq!(tool_texts[1], "unknown city: Atlantis");
    assert_eq!(
        tool_texts[2],
        "Error: the tool hang did not answer within 0 s and the call was abandoned."
    );
}

#[test]
fn max_rounds_ends_with_a_clear_notice() {
    let c = call("Tokyo");
    let mut agent = agent(
        &[&c, &c, &c],
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        2,
        Duration::from_secs(5),
    );
    let (result, prompts, notices) = run(&mut agent, vec![Message::user("loop")]);
    assert_eq!(result.stop_reason, StopReason::MaxRounds);
    assert_eq!(result.rounds, 2);
    assert_eq!(prompts.len(), 2);
    assert!(notices[0].contains("max_rounds"), "{notices:?}");
}

#[test]
fn thinking_switches_hard_and_soft() {
    // Hard switch off: the prompt closes the think block and all output is content.
    let mut agent_off = agent(
        &["Plain <think>not parsed</think> answer."],
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        2,
        Duration::from_secs(5),
    );
    let (result, prompts, _) = run(&mut agent_off, vec![Message::user("hi /think")]);
    assert!(prompts[0].ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    assert_eq!(result.content, "Plain <think>not parsed</think> answer.");
    assert_eq!(result.reasoning_content, None);
    // Soft switch mid-conversation: the template leaves thinking on, the model writes an empty block.
    let mut agent_on = agent(
        &["<think>\nok\n</think>\n\nA.", "<think>\n\n</think>\n\nB."],
        GenerateSpec::default(),
        2,
        Duration::from_secs(5),
    );
    let (first, _, _) = run(&mut agent_on, vec![Message::user("first")]);
    let mut history = first.messages;
    history.push(Message::user("second /no_think"));
    let (second, prompts, _) = run(&mut agent_on, history);
    assert!(prompts[0].ends_with("second /no_think<|im_end|>\n<|im_start|>assistant\n"));
    assert_eq!(second.content, "B.");
    assert_eq!(second.reasoning_content.as_deref(), Some(""));
}

struct BigOutput;
impl Tool for BigOutput {
    fn name(&self) -> &str {
        "dump"
    }
    fn description(&self) -> &str {
        "Returns a long text"
    }
    fn parameters(&self) -> &Json {
        static S: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        S.get_or_init(|| json!({"type": "object", "properties": {}}))
    }
    fn call(&self, _: &Map<String, Json>) -> ToolOutput {
        ToolOutput::ok(format!(
            "BEGIN {} END",
            "lorem ipsum dolor sit amet ".repeat(150)
        ))
    }
}

fn budget_agent(script: &[&str], context: usize) -> Agent {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let tokenizer = qwen3_agent::chat::Tokenizer::from_model_dir(&dir).unwrap();
    let backend = ScriptedBackend::new(template(), script.iter().map(|s| s.to_string()).collect())
        .with_context(tokenizer, context);
    let mut tools = ToolRegistry::new(Duration::from_secs(5));
    tools.register(Arc::new(BigOutput)).unwrap();
    let generate = GenerateSpec {
        thinking: Some(false),
        max_new_tokens: Some(100),
        ..Default::default()
    };
    Agent::new(Box::new(backend), tools, generate, None, 4)
}

#[test]
fn long_tool_results_are_cut_to_head_and_tail_when_the_context_is_short() {
    let dump = "<tool_call>\n{\"name\": \"dump\", \"arguments\": {}}\n</tool_call>";
    let mut agent = budget_agent(&[dump, "Done."], 700);
    let (result, prompts, notices) = run(&mut agent, vec![Message::user("dump it")]);
    assert_eq!(result.content, "Done.");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("cut to its head and tail")),
        "{notices:?}"
    );
    assert!(
        prompts[1].contains("characters cut to fit the context")
            && prompts[1].contains("BEGIN")
            && prompts[1].contains("END")
    );
}

#[test]
fn oldest_turns_are_dropped_when_cutting_is_not_enough() {
    let mut agent = budget_agent(&["Answer four."], 240);
    let mut history = Vec::new();
    for i in 0..3 {
        history.push(Message::user(format!(
            "question {i}: {}",
            "words ".repeat(20)
        )));
        history.push(Message::Assistant {
            content: format!("answer {i}"),
            reasoning_content: None,
            tool_calls: vec![],
        });
    }
    history.push(Message::user("question four"));
    let (result, prompts, notices) = run(&mut agent, history);
    assert_eq!(result.content, "Answer four.");
    assert!(
        notices
            .iter()
            .any(|n| n.contains("oldest turn was dropped")),
        "{notices:?}"
    );
    assert!(
        !prompts[0].contains("question 0") && prompts[0].contains("question four"),
        "{}",
        prompts[0]
    );
}

/// Blocks until released (or 30 s), telling the test when its call has started.
struct Blocker {
    started: Arc<(Mutex<bool>, Condvar)>,
}

impl Tool for Blocker {
    fn name(&self) -> &str {
        "block"
    }
    fn description(&self) -> &str {
        "Blocks"
    }
    fn parameters(&self) -> &Json {
        static S: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        S.get_or_init(|| json!({"type": "object", "properties": {}}))
    }
    fn call(&self, _: &Map<String, Json>) -> ToolOutput {
        let (started, changed) = &*self.started;
        *started.lock().unwrap() = true;
        changed.notify_all();
        std::thread::sleep(Duration::from_secs(30));
        ToolOutput::ok("too late")
    }
}

#[test]
fn an_interrupt_during_a_call_abandons_it_and_stops_the_run() {
    let started: Arc<(Mutex<bool>, Condvar)> = Arc::default();
    let mut tools = ToolRegistry::new(Duration::from_secs(60));
    tools
        .register(Arc::new(Blocker {
            started: started.clone(),
        }))
        .unwrap();
    let script = vec![
        "<tool_call>\n{\"name\": \"block\", \"arguments\": {}}\n</tool_call>".to_string(),
        "never used".to_string(),
    ];
    let mut agent = Agent::new(
        Box::new(ScriptedBackend::new(template(), script)),
        tools,
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        None,
        4,
    );
    let interrupt = agent.interrupt_flag();
    let interrupter = std::thread::spawn(move || {
        let (flag, changed) = &*started;
        let guard = changed
            .wait_timeout_while(flag.lock().unwrap(), Duration::from_secs(30), |s| !*s)
            .unwrap()
            .0;
        assert!(*guard, "the call never started");
        interrupt.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let (result, prompts, notices) = run(&mut agent, vec![Message::user("block")]);
    interrupter.join().unwrap();
    assert_eq!(result.stop_reason, StopReason::Interrupted);
    assert_eq!(prompts.len(), 1, "no model call after the interrupt");
    let Some(Message::Tool { content, .. }) = result.messages.last() else {
        panic!("{:?}", result.messages)
    };
    assert_eq!(
        content,
        "Error: block was interrupted by the user before it answered."
    );
    assert_eq!(
        notices,
        ["interrupted: the tool calls still running were abandoned"]
    );
    assert!(
        !agent
            .interrupt_flag()
            .load(std::sync::atomic::Ordering::SeqCst),
        "the run that honoured the interrupt cleared it"
    );
}

/// Pushes a notice, waits (up to 10 s) until the agent has reported it, then pushes a second one.
struct Chatty {
    notices: qwen3_agent::tools::Notices,
    seen: Arc<(Mutex<bool>, Condvar)>,
}

impl Tool for Chatty {
    fn name(&self) -> &str {
        "chatty"
    }
    fn description(&self) -> &str {
        "Leaves notices"
    }
    fn parameters(&self) -> &Json {
        static S: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        S.get_or_init(|| json!({"type": "object", "properties": {}}))
    }
    fn call(&self, _: &Map<String, Json>) -> ToolOutput {
        self.notices.push("first notice");
        let (seen, changed) = &*self.seen;
        let guard = changed
            .wait_timeout_while(seen.lock().unwrap(), Duration::from_secs(10), |s| !*s)
            .unwrap()
            .0;
        self.notices.push("second notice");
        ToolOutput::ok(if *guard {
            "reported while running"
        } else {
            "not reported while running"
        })
    }
}

#[test]
fn tool_notices_become_agent_events_while_the_call_runs_and_after_it() {
    let seen: Arc<(Mutex<bool>, Condvar)> = Arc::default();
    let mut tools = ToolRegistry::new(Duration::from_secs(30));
    let chatty = Chatty {
        notices: tools.notices(),
        seen: seen.clone(),
    };
    tools.register(Arc::new(chatty)).unwrap();
    let script = vec![
        "<tool_call>\n{\"name\": \"chatty\", \"arguments\": {}}\n</tool_call>".to_string(),
        "Done.".to_string(),
    ];
    let mut agent = Agent::new(
        Box::new(ScriptedBackend::new(template(), script)),
        tools,
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        None,
        4,
    );
    let mut notices = Vec::new();
    let result = agent
        .run(vec![Message::user("talk")], &mut |event| {
            if let AgentEvent::Notice(text) = event {
                notices.push(text.to_string());
                if text == "first notice" {
                    let (flag, changed) = &*seen;
                    *flag.lock().unwrap() = true;
                    changed.notify_all();
                }
            }
        })
        .unwrap();
    assert_eq!(notices, ["first notice", "second notice"]);
    let tool_result = result.messages.iter().find_map(|m| match m {
        Message::Tool { content, .. } => Some(content.as_str()),
        _ => None,
    });
    assert_eq!(tool_result, Some("reported while running"));
}

#[test]
fn a_backend_error_returns_the_conversation_so_far() {
    // The script ends after one call round: the second model call fails.
    let mut agent = agent(
        &[&call("Tokyo")],
        GenerateSpec {
            thinking: Some(false),
            ..Default::default()
        },
        4,
        Duration::from_secs(5),
    );
    let failure = agent
        .run(vec![Message::user("Tokyo?")], &mut |_| {})
        .unwrap_err();
    assert_eq!(
        failure.to_string(),
        "the scripted backend has no output left for model call 2 (its script has 1 entries)"
    );
    assert_eq!(failure.rounds, 1);
    let roles: Vec<&str> = failure
        .messages
        .iter()
        .map(|m| match m {
            Message::System { .. } => "system",
            Message::User { .. } => "user",
            Message::Assistant { .. } => "assistant",
            Message::Tool { .. } => "tool",
        })
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"]);
    let Message::Tool { content, .. } = &failure.messages[3] else {
        unreachable!()
    };
    assert_eq!(content, "Tokyo: 16:00");
}

#[test]
fn max_rounds_zero_is_an_error_not_a_silent_run() {
    let mut agent = agent(&["x"], GenerateSpec::default(), 0, Duration::from_secs(5));
    let failure = agent
        .run(vec![Message::user("hi")], &mut |_| {})
        .unwrap_err();
    assert_eq!(
        failure.to_string(),
        "max_rounds is 0, so the agent may not call the model even once: set max_rounds to at least 1"
    );
    assert_eq!(failure.rounds, 0);
}

/// A scripted agent measuring prompts against `context` tokens, with this system prompt and one tool.
fn tight_agent(system: &str, context: usize, max_new_tokens: usize) -> Agent {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let tokenizer = qwen3_agent::chat::Tokenizer::from_model_dir(&dir).unwrap();
    let backend =
        ScriptedBackend::new(template(), vec!["Fine.".into()]).with_context(tokenizer, context);
    let mut tools = ToolRegistry::new(Duration::from_secs(5));
    tools.register(CityTime::new()).unwrap();
    let generate = GenerateSpec {
        thinking: Some(false),
        max_new_tokens: Some(max_new_tokens),
        ..Default::default()
    };
    Agent::new(Box::new(backend), tools, generate, Some(system.into()), 4)
}

/// Tokens of the prompt `messages` render to with the tight agent's tool, counted by the tokenizer.
fn prompt_tokens(messages: &[Message], tools: &ToolRegistry) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let tokenizer = qwen3_agent::chat::Tokenizer::from_model_dir(&dir).unwrap();
    let request = qwen3_agent::chat::RenderRequest {
        messages: messages.iter().map(Message::to_json).collect(),
        tools: Some(tools.schemas()),
        add_generation_prompt: true,
        enable_thinking: Some(false),
        extra: Default::default(),
    };
    tokenizer
        .encode(&template().render(&request).unwrap())
        .unwrap()
        .len()
}

#[test]
fn a_system_prompt_too_big_for_the_context_is_a_clear_error() {
    let system = "Follow these rules carefully. ".repeat(60);
    let mut tools = ToolRegistry::new(Duration::from_secs(5));
    tools.register(CityTime::new()).unwrap();
    let fixed = prompt_tokens(
        &[Message::system(system.clone()), Message::user("")],
        &tools,
    );
    assert!(fixed > 300, "the system prompt must not fit: {fixed}");
    let mut agent = tight_agent(&system, 300, 50);
    let failure = agent
        .run(vec![Message::user("hi")], &mut |_| {})
        .unwrap_err();
    assert_eq!(
        failure.to_string(),
        format!(
            "the system prompt and the 1 tool schemas alone take {fixed} tokens, which with \
             generate.max_new_tokens 50 exceeds model.context_length 300: raise model.context_length, \
             shorten the system prompt or offer fewer tools, or lower max_new_tokens"
        )
    );
    assert_eq!(failure.rounds, 0);
    assert_eq!(failure.messages.len(), 2, "the input is kept");
}

#[test]
fn max_new_tokens_as_large_as_the_context_is_a_clear_error() {
    let mut agent = tight_agent("Be brief.", 300, 300);
    let failure = agent
        .run(vec![Message::user("hi")], &mut |_| {})
        .unwrap_err();
    assert_eq!(
        failure.to_string(),
        "generate.max_new_tokens (300) leaves no room for a prompt in model.context_length (300): lower \
         max_new_tokens or raise context_length"
    );
}

#[test]
fn a_history_of_only_system_messages_that_does_not_fit_fails_cleanly() {
    let mut agent = tight_agent("Be brief.", 120, 50);
    let failure = agent
        .run(
            vec![Message::system("Long rules. ".repeat(100))],
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(failure.rounds, 0);
    assert_eq!(failure.messages.len(), 1);
}

/// A backend that answers in words and keeps the answer format each call asked for.
struct FormatProbe(Arc<Mutex<Vec<Option<qwen3_agent::chat::AnswerFormat>>>>);

impl qwen3_agent::backend::Backend for FormatProbe {
    fn complete(
        &mut self,
        request: &qwen3_agent::backend::BackendRequest,
        _on_event: &mut dyn FnMut(&qwen3_agent::chat::ParseEvent),
    ) -> anyhow::Result<qwen3_agent::backend::BackendResponse> {
        self.0.lock().unwrap().push(request.format.cloned());
        Ok(qwen3_agent::backend::BackendResponse {
            output: qwen3_agent::chat::ParsedOutput {
                content: "Done.".into(),
                ..Default::default()
            },
            finish_reason: qwen3_agent::chat::FinishReason::Stop,
            prompt_text: Some(String::new()),
            raw_output: "Done.".into(),
            prompt_tokens: 0,
            completion_tokens: 0,
            timings: None,
        })
    }
}

/// `generate.constrain_tool_calls` asks the backend for optional, parallel calls of the agent's own
/// tools (free text until a `<tool_call>`, then their schemas); unset, no format is asked for.
#[test]
fn constrain_tool_calls_asks_for_the_tools_grammar() {
    for constrain in [None, Some(false), Some(true)] {
        let formats = Arc::new(Mutex::new(Vec::new()));
        let mut tools = ToolRegistry::new(Duration::from_secs(5));
        tools.register(CityTime::new()).unwrap();
        let schemas = tools.schemas();
        let mut agent = Agent::new(
            Box::new(FormatProbe(formats.clone())),
            tools,
            GenerateSpec {
                constrain_tool_calls: constrain,
                ..Default::default()
            },
            None,
            2,
        );
        let (result, _, _) = run(&mut agent, vec![Message::user("Tokyo?")]);
        assert_eq!(result.content, "Done.");
        let expected =
            (constrain == Some(true)).then(|| qwen3_agent::chat::AnswerFormat::ToolCalls {
                tools: schemas.clone(),
                parallel: true,
                optional: true,
            });
        assert_eq!(*formats.lock().unwrap(), [expected], "{constrain:?}");
    }
}
