//! What the server answers: the chat-completion object, and the same answer as stream chunks. Both are
//! built from the backend's parse (events while streaming, the aggregate at the end), so a streamed
//! answer adds up to the non-streamed one: the parser's deltas add up to its aggregate.

use crate::backend::BackendResponse;
use crate::chat::{FinishReason, ParseEvent, ParsedToolCall};
use serde_json::{Value as Json, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `prefix` and 24 hex digits, unique per process and unlikely to repeat across runs.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = crate::rng::Rng::new(nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed), prefix);
    format!(
        "{prefix}{:016x}{:08x}",
        rng.next_u64(),
        rng.next_u64() as u32
    )
}

/// Seconds since the epoch, OpenAI's `created`.
pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's finish reason: a call ends the turn as `tool_calls`.
fn finish_reason(response: &BackendResponse) -> &'static str {
    match response.finish_reason {
        _ if !response.output.tool_calls.is_empty() => "tool_calls",
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// The usage object; `cached_tokens` is the prompt prefix the engine reused from the previous request.
pub fn usage(response: &BackendResponse) -> Json {
    let mut usage = json!({
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "total_tokens": response.prompt_tokens + response.completion_tokens,
    });
    if let Some(timings) = &response.timings {
        usage["prompt_tokens_details"] = json!({"cached_tokens": timings.reused_tokens});
    }
    usage
}

/// A call in the OpenAI shape; arguments are a JSON string.
fn tool_call(id: &str, call: &ParsedToolCall) -> Json {
    json!({"id": id, "type": "function", "function": {
        "name": call.name, "arguments": arguments(call)}})
}

fn arguments(call: &ParsedToolCall) -> String {
    Json::Object(call.arguments.clone()).to_string()
}

/// Thinking is reported under both names clients read: `reasoning_content` (DeepSeek's, SGLang's) and
/// `reasoning` (vLLM's since 0.10).
fn reasoning(text: &str) -> Json {
    json!({"reasoning_content": text, "reasoning": text})
}

/// The non-streamed `chat.completion` object.
pub fn completion(id: &str, model: &str, response: &BackendResponse) -> Json {
    let output = &response.output;
    let calls: Vec<Json> = output
        .tool_calls
        .iter()
        .map(|call| tool_call(&new_id("call_"), call))
        .collect();
    let mut message = json!({"role": "assistant", "content": output.content});
    if output.content.is_empty() && !calls.is_empty() {
        message["content"] = Json::Null;
    }
    let thought = output.reasoning_content.as_deref().unwrap_or_default();
    for (key, value) in reasoning(thought).as_object().into_iter().flatten() {
        message[key] = if thought.is_empty() {
            Json::Null
        } else {
            value.clone()
        };
    }
    if !calls.is_empty() {
        message["tool_calls"] = Json::Array(calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(response)}],
        "usage": usage(response),
    })
}

/// The non-streamed `text_completion` object of `/v1/completions`: the text exactly as generated.
pub fn text_completion(id: &str, model: &str, response: &BackendResponse) -> Json {
    json!({
        "id": id,
        "object": "text_completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{"index": 0, "text": response.output.content, "logprobs": null,
                     "finish_reason": finish_reason(response)}],
        "usage": usage(response),
    })
}

/// Which endpoint's shapes an answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `chat.completion` and `chat.completion.chunk`.
    Chat,
    /// `text_completion`, streamed as the same object with text pieces.
    Text,
}

/// The chunks of one streamed answer, in order: the role (chat only), then one per parse event, then
/// the finish and (when asked) the usage.
pub struct Chunks {
    id: String,
    model: String,
    created: u64,
    calls: usize,
    kind: Kind,
}

impl Chunks {
    pub fn new(id: &str, model: &str, kind: Kind) -> Self {
        Chunks {
            id: id.to_string(),
            model: model.to_string(),
            created: now_seconds(),
            calls: 0,
            kind,
        }
    }

    fn object(&self) -> &'static str {
        match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        }
    }

    /// A chunk of one choice; a text completion's choice carries the delta's content as `text`.
    fn chunk(&self, delta: Json, finish_reason: Option<&str>) -> Json {
        let mut choice = json!({"index": 0, "logprobs": null, "finish_reason": finish_reason});
        match self.kind {
            Kind::Chat => choice["delta"] = delta,
            Kind::Text => choice["text"] = delta.get("content").cloned().unwrap_or(json!("")),
        }
        json!({
            "id": self.id,
            "object": self.object(),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The first chunk of a chat answer: the role, with empty content as OpenAI sends it. A text
    /// completion has none.
    pub fn role(&self) -> Option<Json> {
        (self.kind == Kind::Chat)
            .then(|| self.chunk(json!({"role": "assistant", "content": ""}), None))
    }

    /// The chunks for one parse event. A call is sent as OpenAI streams one: its id, type and name
    /// first, then its arguments. Parse errors send nothing: the server's parser keeps blocks that
    /// are not valid calls in the content (`CallParsing::CallsElseText`), so none come.
    pub fn event(&mut self, event: &ParseEvent) -> Vec<Json> {
        match event {
            ParseEvent::ReasoningDelta(text) => vec![self.chunk(reasoning(text), None)],
            ParseEvent::ContentDelta(text) => vec![self.chunk(json!({"content": text}), None)],
            ParseEvent::ToolCall(call) => {
                let index = self.calls;
                self.calls += 1;
                let head = json!({"index": index, "id": new_id("call_"), "type": "function",
                                  "function": {"name": call.name, "arguments": ""}});
                let tail = json!({"index": index, "function": {"arguments": arguments(call)}});
                vec![
                    self.chunk(json!({"tool_calls": [head]}), None),
                    self.chunk(json!({"tool_calls": [tail]}), None),
                ]
            }
            ParseEvent::Error(_) => Vec::new(),
        }
    }

    /// The last chunk of the answer: an empty delta and the finish reason.
    pub fn finish(&self, response: &BackendResponse) -> Json {
        self.chunk(json!({}), Some(finish_reason(response)))
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage(&self, response: &BackendResponse) -> Json {
        json!({
            "id": self.id,
            "object": self.object(),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(response),
        })
    }
}
