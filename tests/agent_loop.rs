//! The agent loop on the scripted backend (raw model outputs through the real template and parser),
//! with tools defined here. Asserts on the exact prompts the model would have read.

use qwen3_agent::agent::{Agent, AgentEvent, StopReason};
use qwen3_agent::backend::ScriptedBackend;
use qwen3_agent::chat::{ChatTemplate, Message};
use qwen3_agent::config::GenerateSpec;
use qwen3_agent::tools::{Tool, ToolOutput, ToolRegistry};
use serde_json::{Map, Value as Json, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A tool for these tests: answers "<city>: <hour>" after sleeping `delay_ms` (to prove results keep
/// call order even when calls finish out of order).
struct CityTime {
    schema: Json,
}

impl CityTime {
    fn new() -> Arc<Self> {
        Arc::new(CityTime {
            schema: json!({"type": "object", "properties": {"city": {"type": "string"}, "delay_ms": {"type": "integer"}}, "required": ["city"]}),
        })
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
        let delay = arguments
            .get("delay_ms")
            .and_then(Json::as_u64)
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(delay));
        match arguments.get("city").and_then(Json::as_str) {
            Some("Atlantis") => ToolOutput::error("unknown city: Atlantis"),
            Some(city) => ToolOutput::ok(format!("{city}: 16:00")),
            None => ToolOutput::error("city is required"),
        }
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

fn call(city: &str, delay: u64) -> String {
    format!(
        "<tool_call>\n{{\"name\": \"city_time\", \"arguments\": {{\"city\": \"{city}\", \"delay_ms\": {delay}}}}}\n</tool_call>"
    )
}

#[test]
fn parallel_calls_run_concurrently_and_results_keep_call_order() {
    let round1 = format!(
        "<think>\nI need both cities.\n</think>\n\n{}\n{}",
        call("Tokyo", 300),
        call("Paris", 0)
    );
    let mut agent = agent(
        &[
            &round1,
            "<think>\nBoth known.\n</think>\n\nTokyo and Paris: 16:00.",
        ],
        GenerateSpec::default(),
        4,
        Duration::from_secs(10),
    );
    let start = std::time::Instant::now();
    let (result, prompts, _) = run(&mut agent, vec![Message::user("Time in Tokyo and Paris?")]);
    assert!(
        start.elapsed() < Duration::from_millis(290 + 250),
        "calls did not overlap"
    );
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
         <tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Tokyo\", \"delay_ms\": 300}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"city_time\", \"arguments\": {\"city\": \"Paris\", \"delay_ms\": 0}}\n</tool_call><|im_end|>\n\
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
        &[bad, &call("Tokyo", 0), "Tokyo: 16:00."],
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
    let start = std::time::Instant::now();
    let (result, _, _) = run(&mut agent, vec![Message::user("?")]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the hung call held the agent"
    );
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
    assert!(
        tool_texts[2].contains("did not answer within"),
        "{}",
        tool_texts[2]
    );
}

#[test]
fn max_rounds_ends_with_a_clear_notice() {
    let c = call("Tokyo", 0);
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
