//! What the server answers: the chat-completion object, and the same answer as stream chunks. Both are
//! built from the backend's parse (events while streaming, the aggregate at the end), so a streamed
//! answer adds up to the non-streamed one: the parser's deltas add up to its aggregate.

use crate::backend::{BackendResponse, TokenLogprob};
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

/// A log-probability as JSON: -inf (a token the model rules out) as -9999, as vLLM sends it, since
/// JSON has no infinities.
fn logprob_value(logprob: f32) -> Json {
    json!(logprob.max(-9999.0))
}

/// A token's text as clients read it: its bytes as UTF-8, a partial character replaced by U+FFFD
/// (the exact bytes go in `bytes`).
fn token_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Chat's `logprobs` object: every generated token (thinking and tool-call text included, as vLLM
/// reports them), each with its alternatives.
pub fn chat_logprobs(tokens: &[TokenLogprob]) -> Json {
    let entry = |bytes: &[u8], logprob: f32| json!({"token": token_text(bytes), "logprob": logprob_value(logprob), "bytes": bytes});
    let content: Vec<Json> = tokens
        .iter()
        .map(|t| {
            let mut item = entry(&t.token, t.logprob);
            item["top_logprobs"] = t.top.iter().map(|(b, l)| entry(b, *l)).collect();
            item
        })
        .collect();
    json!({"content": content})
}

/// The completions API's `logprobs` object; `offset` is the text's length (in characters) before
/// the first of `tokens`. Each `top_logprobs` map holds the alternatives and the chosen token, as
/// vLLM's does.
pub fn text_logprobs(tokens: &[TokenLogprob], offset: usize) -> Json {
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut at = offset;
    for token in tokens {
        offsets.push(at);
        at += token_text(&token.token).chars().count();
    }
    let top: Vec<Json> = tokens
        .iter()
        .map(|t| {
            let mut map = serde_json::Map::new();
            for (bytes, logprob) in t.top.iter().chain([(t.token.clone(), t.logprob)].iter()) {
                map.insert(token_text(bytes), logprob_value(*logprob));
            }
            Json::Object(map)
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| token_text(&t.token)).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| logprob_value(t.logprob)).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// The characters `tokens` add to a completion's text offsets.
fn text_length(tokens: &[TokenLogprob]) -> usize {
    tokens
        .iter()
        .map(|t| token_text(&t.token).chars().count())
        .sum()
}

/// The non-streamed `chat.completion` object; `logprobs` are the tokens' when they were asked for.
pub fn completion(
    id: &str,
    model: &str,
    response: &BackendResponse,
    logprobs: Option<&[TokenLogprob]>,
) -> Json {
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
        "choices": [{"index": 0, "message": message,
                     "logprobs": logprobs.map(chat_logprobs),
                     "finish_reason": finish_reason(response)}],
        "usage": usage(response),
    })
}

/// The non-streamed `text_completion` object of `/v1/completions`: the text exactly as generated.
pub fn text_completion(
    id: &str,
    model: &str,
    response: &BackendResponse,
    logprobs: Option<&[TokenLogprob]>,
) -> Json {
    json!({
        "id": id,
        "object": "text_completion",
        "created": now_seconds(),
        "model": model,
        "choices": [{"index": 0, "text": response.output.content,
                     "logprobs": logprobs.map(|tokens| text_logprobs(tokens, 0)),
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
/// the finish and (when asked) the usage. Tokens' logprobs ride on the first chunk after them (the
/// finish chunk takes any left), so the chunks' logprobs add up to the non-streamed answer's.
pub struct Chunks {
    id: String,
    model: String,
    created: u64,
    calls: usize,
    kind: Kind,
    /// Logprobs of tokens whose chunk is still to come.
    tokens: Vec<TokenLogprob>,
    /// The characters of text the sent logprobs covered (completions' `text_offset`).
    offset: usize,
}

impl Chunks {
    pub fn new(id: &str, model: &str, kind: Kind) -> Self {
        Chunks {
            id: id.to_string(),
            model: model.to_string(),
            created: now_seconds(),
            calls: 0,
            kind,
            tokens: Vec::new(),
            offset: 0,
        }
    }

    /// A token's logprobs, to go out with the next chunk.
    pub fn logprob(&mut self, token: TokenLogprob) {
        self.tokens.push(token);
    }

    /// Puts the waiting tokens' logprobs on `chunk`.
    fn attach_logprobs(&mut self, chunk: &mut Json) {
        if self.tokens.is_empty() {
            return;
        }
        let tokens = std::mem::take(&mut self.tokens);
        chunk["choices"][0]["logprobs"] = match self.kind {
            Kind::Chat => chat_logprobs(&tokens),
            Kind::Text => text_logprobs(&tokens, self.offset),
        };
        self.offset += text_length(&tokens);
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
        let mut chunks = self.event_chunks(event);
        if let Some(first) = chunks.first_mut() {
            self.attach_logprobs(first);
        }
        chunks
    }

    fn event_chunks(&mut self, event: &ParseEvent) -> Vec<Json> {
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

    /// The last chunk of the answer: an empty delta and the finish reason, with the logprobs of
    /// tokens no chunk carried yet.
    pub fn finish(&mut self, response: &BackendResponse) -> Json {
        let mut chunk = self.chunk(json!({}), Some(finish_reason(response)));
        self.attach_logprobs(&mut chunk);
        chunk
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{FinishReason, ParsedOutput};

    fn token(text: &[u8], logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: text.to_vec(),
            logprob,
            top: vec![(text.to_vec(), logprob), (b"x".to_vec(), f32::NEG_INFINITY)],
        }
    }

    fn response(text: &str) -> BackendResponse {
        BackendResponse {
            output: ParsedOutput {
                content: text.into(),
                ..ParsedOutput::default()
            },
            finish_reason: FinishReason::Stop,
            prompt_text: None,
            raw_output: text.into(),
            prompt_tokens: 1,
            completion_tokens: 3,
            timings: None,
        }
    }

    #[test]
    fn chat_logprobs_have_openais_shape() {
        // "é" split over two byte-level tokens: each shows as U+FFFD, its bytes exact.
        let tokens = [
            token(b"Hi", -0.5),
            token(&[0xC3], -1.0),
            token(&[0xA9], 0.0),
        ];
        let answer = completion("id", "m", &response("Hié"), Some(&tokens));
        let content = &answer["choices"][0]["logprobs"]["content"];
        assert_eq!(
            content[0],
            json!({"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                {"token": "x", "logprob": -9999.0, "bytes": [120]}]})
        );
        assert_eq!(content[1]["token"], "\u{FFFD}");
        assert_eq!(content[1]["bytes"], json!([0xC3]));
        let none = completion("id", "m", &response("Hi"), None);
        assert_eq!(none["choices"][0]["logprobs"], Json::Null);
        let empty = completion("id", "m", &response(""), Some(&[]));
        assert_eq!(empty["choices"][0]["logprobs"], json!({"content": []}));
    }

    #[test]
    fn streamed_logprobs_ride_the_next_chunk_and_add_up_to_the_plain_ones() {
        let tokens = [token(b"Hel", -0.25), token(b"lo", -0.5), token(b"!", -1.5)];
        let plain = text_completion("id", "m", &response("Hello!"), Some(&tokens));
        let plain = &plain["choices"][0]["logprobs"];
        assert_eq!(plain["text_offset"], json!([0, 3, 5]));
        assert_eq!(
            plain["top_logprobs"][0],
            json!({"Hel": -0.25, "x": -9999.0})
        );

        let mut chunks = Chunks::new("id", "m", Kind::Text);
        chunks.logprob(tokens[0].clone());
        chunks.logprob(tokens[1].clone());
        let first = chunks.event(&ParseEvent::ContentDelta("Hello".into()));
        chunks.logprob(tokens[2].clone());
        let finish = chunks.finish(&response("Hello!"));
        let streamed = [&first[0], &finish].map(|c| c["choices"][0]["logprobs"].clone());
        assert_eq!(streamed[0]["tokens"], json!(["Hel", "lo"]));
        assert_eq!(streamed[1]["text_offset"], json!([5]), "offsets run on");
        for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
            let joined: Vec<Json> = streamed
                .iter()
                .flat_map(|s| s[key].as_array().unwrap().clone())
                .collect();
            assert_eq!(Json::from(joined), plain[key], "{key}");
        }
        // A chunk with no new tokens carries none.
        let later = chunks.event(&ParseEvent::ContentDelta("more".into()));
        assert_eq!(later[0]["choices"][0]["logprobs"], Json::Null);
    }
}
