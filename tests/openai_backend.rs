//! The openai backend against a local HTTP server that speaks the OpenAI streaming format: reasoning and
//! tool-call deltas split across chunks, servers without a reasoning parser, retries and 4xx errors,
//! and servers that misbehave: one that stalls mid-stream (read timeout; Ctrl-C while it is silent)
//! and one that sends an absurd tool-call index.

mod common;

use common::openai_server::{delta, finish, read_request, serve, sse};
use qwen3_agent::agent::{Agent, StopReason};
use qwen3_agent::backend::{Backend, BackendRequest, BackendResponse, CallParsing, OpenAiBackend};
use qwen3_agent::chat::{FinishReason, Message, ParseEvent};
use qwen3_agent::config::GenerateSpec;
use qwen3_agent::engine::SamplingParams;
use qwen3_agent::tools::{Tool, ToolOutput, ToolRegistry};
use serde_json::{Map, Value as Json, json};
use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

struct Weather;
impl Tool for Weather {
    fn name(&self) -> &str {
        "weather"
    }
    fn description(&self) -> &str {
        "Weather in a city"
    }
    fn parameters(&self) -> &Json {
        static S: std::sync::OnceLock<Json> = std::sync::OnceLock::new();
        S.get_or_init(|| json!({"type": "object", "properties": {"city": {"type": "string"}}}))
    }
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        ToolOutput::ok(format!(
            "{}: sunny",
            arguments["city"].as_str().unwrap_or("?")
        ))
    }
}

fn agent(url: &str, thinking: bool) -> Agent {
    let mut tools = ToolRegistry::new(Duration::from_secs(5));
    tools.register(Arc::new(Weather)).unwrap();
    let backend =
        OpenAiBackend::new(url, Some("sk-test".into()), "Qwen/Qwen3-8B-AWQ".into()).unwrap();
    Agent::new(
        Box::new(backend),
        tools,
        GenerateSpec {
            thinking: Some(thinking),
            ..Default::default()
        },
        None,
        4,
    )
}

#[test]
fn reasoning_and_tool_call_deltas_split_across_chunks() {
    let round1 = sse(&[
        delta(json!({"role": "assistant", "reasoning_content": "Need "})),
        delta(json!({"reasoning_content": "the weather."})),
        delta(
            json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}),
        ),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"ci"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Os"}}]})),
        delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "lo\"}"}}]})),
        finish("tool_calls"),
        json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 20}}),
    ]);
    let round2 = sse(&[
        delta(json!({"reasoning_content": "Got it."})),
        delta(json!({"content": "Oslo is "})),
        delta(json!({"content": "sunny."})),
        finish("stop"),
        json!({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 5}}),
    ]);
    let server = serve(vec![(200, round1), (200, round2)]);
    let mut agent = agent(&server.url, true);
    let result = agent
        .run(vec![Message::user("Weather in Oslo?")], &mut |_| {})
        .unwrap();
    assert_eq!(result.stop_reason, StopReason::Answer);
    assert_eq!(result.content, "Oslo is sunny.");
    assert_eq!(result.reasoning_content.as_deref(), Some("Got it."));
    assert_eq!(result.usage.prompt_tokens, 130);
    let bodies = server.bodies.lock().unwrap();
    assert_eq!(bodies[0]["tools"][0]["function"]["name"], "weather");
    assert_eq!(
        bodies[0]["chat_template_kwargs"],
        json!({"enable_thinking": true})
    );
    assert_eq!(bodies[0]["stream"], true);
    assert_eq!(bodies[0]["model"], "Qwen/Qwen3-8B-AWQ");
    let history = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(
        history[1]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(
        history[2],
        json!({"role": "tool", "content": "Oslo: sunny", "tool_call_id": "call_1_1", "name": "weather"})
    );
}

#[test]
fn think_block_and_tool_call_text_in_content_without_server_parsers() {
    let body = sse(&[
        delta(json!({"content": "<thi"})),
        delta(json!({"content": "nk>\nplan\n</th"})),
        delta(json!({"content": "ink>\n\n<tool_call>\n{\"name\": \"weather\", "})),
        delta(json!({"content": "\"arguments\": {\"city\": \"Rome\"}}\n</tool_call>"})),
        finish("stop"),
    ]);
    let server = serve(vec![
        (200, body),
        (
            200,
            sse(&[
                delta(json!({"content": "<think>\n\n</think>\n\nRome: sunny."})),
                finish("stop"),
            ]),
        ),
    ]);
    let mut agent = agent(&server.url, true);
    let result = agent
        .run(vec![Message::user("Rome?")], &mut |_| {})
        .unwrap();
    assert_eq!(result.rounds, 2);
    let Message::Assistant {
        reasoning_content,
        tool_calls,
        ..
    } = &result.messages[1]
    else {
        panic!()
    };
    assert_eq!(reasoning_content.as_deref(), Some("plan"));
    assert_eq!(tool_calls[0].function.arguments["city"], "Rome");
    assert_eq!(result.content, "Rome: sunny.");
}

#[test]
fn server_errors_are_retried_and_client_errors_are_not() {
    let server = serve(vec![
        (503, "{\"error\": \"overloaded\"}".into()),
        (
            200,
            sse(&[delta(json!({"content": "fine"})), finish("stop")]),
        ),
    ]);
    let result = agent(&server.url, false)
        .run(vec![Message::user("hi")], &mut |_| {})
        .unwrap();
    assert_eq!(result.content, "fine");
    assert_eq!(server.bodies.lock().unwrap().len(), 2);
    assert_eq!(
        server.bodies.lock().unwrap()[0]["chat_template_kwargs"]["enable_thinking"],
        false
    );

    let server = serve(vec![(400, "{\"error\": \"bad model name\"}".into())]);
    let err = agent(&server.url, false)
        .run(vec![Message::user("hi")], &mut |_| {})
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("400") && format!("{err:#}").contains("bad model name"),
        "{err:#}"
    );
    assert_eq!(server.bodies.lock().unwrap().len(), 1);
}

/// A server that answers one request with the headers and `first` (SSE text), then says nothing more
/// until the returned sender is dropped or sends.
fn serve_then_stall(first: String) -> (String, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (release, released) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (_, mut stream) = read_request(stream);
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(first.as_bytes()).unwrap();
        stream.flush().unwrap();
        // Holds the connection open, silent, until the test is done with it.
        let _ = released.recv_timeout(Duration::from_secs(120));
    });
    (url, release)
}

fn complete(
    backend: &mut OpenAiBackend,
    interrupt: &AtomicBool,
    on_event: &mut dyn FnMut(&ParseEvent),
) -> anyhow::Result<BackendResponse> {
    let messages = [Message::user("hi")];
    let request = BackendRequest {
        messages: &messages,
        tools: &[],
        thinking: false,
        sampling: SamplingParams::for_mode(false),
        max_new_tokens: 64,
        stop: &[],
        interrupt,
        calls: CallParsing::Calls,
        format: None,
        logprobs: None,
    };
    backend.complete(&request, on_event)
}

fn backend(url: &str, read_timeout: Duration) -> OpenAiBackend {
    OpenAiBackend::new(url, None, "m".into())
        .unwrap()
        .with_read_timeout(read_timeout)
}

#[test]
fn a_server_that_stalls_mid_stream_is_a_read_timeout_error() {
    let first = format!("data: {}\n\n", delta(json!({"content": "Hello"})));
    let (url, _release) = serve_then_stall(first);
    let mut backend = backend(&url, Duration::from_millis(500));
    let interrupt = AtomicBool::new(false);
    let mut seen = String::new();
    let err = complete(&mut backend, &interrupt, &mut |e| {
        if let ParseEvent::ContentDelta(text) = e {
            seen.push_str(text);
        }
    })
    .expect_err("a stalled stream fails");
    let message = format!("{err:#}");
    assert!(
        message.contains("the server sent nothing for") && message.contains("read_timeout"),
        "{message}"
    );
    assert_eq!(seen, "Hello", "what came before the stall was passed on");
}

#[test]
fn ctrl_c_ends_a_call_while_the_server_is_silent() {
    let first = format!("data: {}\n\n", delta(json!({"content": "Hello"})));
    let (url, _release) = serve_then_stall(first);
    // A read timeout far longer than the test: only the interrupt can end this call.
    let mut backend = backend(&url, Duration::from_secs(3600));
    let interrupt = &AtomicBool::new(false);
    let (first_event, wait_first) = mpsc::channel();
    let response = std::thread::scope(|scope| {
        scope.spawn(move || {
            // Once the first chunk is in, the server is silent; interrupt then.
            let _ = wait_first.recv_timeout(Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(200));
            interrupt.store(true, Ordering::Relaxed);
        });
        complete(&mut backend, interrupt, &mut |_| {
            let _ = first_event.send(());
        })
    })
    .expect("an interrupt returns what came");
    assert_eq!(response.finish_reason, FinishReason::Length);
    assert_eq!(response.output.content, "Hello");
}

#[test]
fn a_huge_tool_call_index_is_refused() {
    let body = sse(&[
        delta(
            json!({"tool_calls": [{"index": 1_000_000_000_000u64, "id": "c", "function": {"name": "weather", "arguments": "{}"}}]}),
        ),
        finish("tool_calls"),
    ]);
    let server = serve(vec![(200, body)]);
    let mut backend = backend(&server.url, Duration::from_secs(30));
    let err = complete(&mut backend, &AtomicBool::new(false), &mut |_| {}).expect_err("refused");
    assert!(
        format!("{err:#}").contains("tool call index 1000000000000 after 0 calls"),
        "{err:#}"
    );
}
