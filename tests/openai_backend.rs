//! The openai backend against a local HTTP server that speaks the OpenAI streaming format: reasoning and
//! tool-call deltas split across chunks, servers without a reasoning parser, retries and 4xx errors.

use qwen3_agent::agent::{Agent, StopReason};
use qwen3_agent::backend::OpenAiBackend;
use qwen3_agent::chat::Message;
use qwen3_agent::config::GenerateSpec;
use qwen3_agent::tools::{Tool, ToolOutput, ToolRegistry};
use serde_json::{Map, Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves one scripted response per connection; records request bodies.
struct FakeServer {
    url: String,
    bodies: Arc<Mutex<Vec<Json>>>,
}

fn serve(responses: Vec<(u16, String)>) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let recorded = bodies.clone();
    std::thread::spawn(move || {
        for (status, body) in responses {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut request = vec![0u8; length];
            reader.read_exact(&mut request).unwrap();
            recorded
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&request).unwrap());
            let mut stream = reader.into_inner();
            let kind = if status == 200 {
                "text/event-stream"
            } else {
                "application/json"
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body.as_bytes()).unwrap();
        }
    });
    FakeServer { url, bodies }
}

fn sse(chunks: &[Json]) -> String {
    chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .collect::<String>()
        + "data: [DONE]\n\n"
}

fn delta(d: Json) -> Json {
    json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]})
}

fn finish(reason: &str) -> Json {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

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
