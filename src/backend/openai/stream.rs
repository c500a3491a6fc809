//! One streamed chat completion, read from the response body: reasoning deltas, content (with our own
//! parser when the server left the think block or `<tool_call>` text in it), native tool-call deltas
//! assembled by index, usage, the finish reason. The body is untrusted input: sizes and tool-call
//! indices are bounded, and a stream that ends before the server said it finished is an error.

use super::sse::SseReader;
use crate::backend::BackendResponse;
use crate::chat::{
    FinishReason, OutputParser, ParseEvent, ParsedOutput, ParsedToolCall, arguments_from_text,
};
use anyhow::{Context, Result, bail};
use serde_json::Value as Json;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};

/// The most event data one response may carry: far beyond any answer a context holds, and a bound on
/// what a server that never stops can make us keep.
pub const MAX_STREAM_BYTES: usize = 256 << 20;

/// How far past the calls seen so far a tool-call `index` may jump (servers number calls 0, 1, 2...;
/// a little slack tolerates one that skips, a huge index is refused instead of allocated).
pub const MAX_INDEX_GAP: usize = 16;

/// Reads the stream in `body` to its end, passing events to `on_event` as they are parsed. An
/// interrupt (which ends `body`, see `transport`) returns what came so far with `FinishReason::Length`,
/// so an unfinished tool call never runs.
pub fn read_stream(
    body: impl Read,
    thinking: bool,
    interrupt: &AtomicBool,
    on_event: &mut dyn FnMut(&ParseEvent),
) -> Result<BackendResponse> {
    let mut content = ContentStream {
        thinking_allowed: thinking,
        undecided: String::new(),
        parser: None,
    };
    let mut reasoning = String::new();
    let mut calls = Calls::default();
    let mut finish = None;
    let mut done = false;
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    let mut raw = String::new();
    let mut received = 0usize;
    for data in SseReader::new(BufReader::new(body)) {
        let data = data.context("the server's stream broke off")?;
        received += data.len();
        if received > MAX_STREAM_BYTES {
            bail!(
                "the server streamed more than {} MiB for one answer; stopped reading",
                MAX_STREAM_BYTES >> 20
            );
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Json = serde_json::from_str(&data)
            .with_context(|| format!("unreadable stream chunk: {}", clip(&data)))?;
        if let Some(error) = chunk.get("error") {
            bail!("the server reported an error mid-stream: {error}");
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as usize;
            completion_tokens = usage["completion_tokens"].as_u64().unwrap_or(0) as usize;
        }
        let Some(choice) = chunk["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        let mut events = Vec::new();
        let reasoning_delta = delta["reasoning_content"]
            .as_str()
            .or_else(|| delta["reasoning"].as_str());
        if let Some(text) = reasoning_delta.filter(|t| !t.is_empty()) {
            reasoning.push_str(text);
            events.push(ParseEvent::ReasoningDelta(text.to_string()));
        }
        if let Some(text) = delta["content"].as_str() {
            raw.push_str(text);
            content.feed(text, !reasoning.is_empty(), &mut events);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            calls.delta(call)?;
        }
        match choice["finish_reason"].as_str() {
            Some("length") => finish = Some(FinishReason::Length),
            Some(_) => finish = Some(FinishReason::Stop),
            None => {}
        }
        events.iter().for_each(&mut *on_event);
    }
    let finish = match finish {
        _ if interrupt.load(Ordering::Relaxed) => FinishReason::Length,
        Some(finish) => finish,
        None if done => FinishReason::Stop,
        None => bail!(
            "the server closed the stream before the answer ended (no finish_reason and no [DONE]); \
             the partial answer was dropped"
        ),
    };
    let mut events = Vec::new();
    let mut output = content.finish(finish, &mut events);
    if !reasoning.is_empty() {
        output.reasoning_content = Some(reasoning.trim_matches('\n').to_string());
    } else if !thinking {
        output.reasoning_content = None;
    }
    for event in calls.finish(finish) {
        match &event {
            ParseEvent::ToolCall(c) => output.tool_calls.push(c.clone()),
            ParseEvent::Error(e) => output.errors.push(e.clone()),
            _ => {}
        }
        events.push(event);
    }
    events.iter().for_each(&mut *on_event);
    Ok(BackendResponse {
        output,
        finish_reason: finish,
        prompt_text: None,
        raw_output: raw,
        prompt_tokens,
        completion_tokens,
        timings: None,
    })
}

/// The start of a long text, for messages.
fn clip(text: &str) -> &str {
    let end = text.char_indices().nth(200).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

/// A native tool call being assembled from deltas.
#[derive(Default)]
struct PartialCall {
    name: String,
    arguments: String,
}

/// Native tool calls by the index the server gives them.
#[derive(Default)]
struct Calls(Vec<PartialCall>);

impl Calls {
    /// Applies one `tool_calls` delta. One without an index continues the last call, unless it
    /// carries an `id` (which only a call's first delta has).
    fn delta(&mut self, call: &Json) -> Result<()> {
        let index = match call["index"].as_u64() {
            Some(index) => {
                if index > (self.0.len() + MAX_INDEX_GAP) as u64 {
                    bail!(
                        "the server sent tool call index {index} after {} calls: the stream is corrupt",
                        self.0.len()
                    );
                }
                index as usize
            }
            None if call.get("id").is_some() || self.0.is_empty() => self.0.len(),
            None => self.0.len() - 1,
        };
        if self.0.len() <= index {
            self.0.resize_with(index + 1, PartialCall::default);
        }
        if let Some(name) = call["function"]["name"].as_str() {
            self.0[index].name.push_str(name);
        }
        if let Some(arguments) = call["function"]["arguments"].as_str() {
            self.0[index].arguments.push_str(arguments);
        }
        Ok(())
    }

    /// A call or an error for the model per call; indices the server skipped are not calls.
    fn finish(self, finish: FinishReason) -> Vec<ParseEvent> {
        self.0
            .into_iter()
            .filter(|c| !(c.name.is_empty() && c.arguments.is_empty()))
            .map(|call| match (finish, arguments_from_text(&call.arguments)) {
                (FinishReason::Length, _) => ParseEvent::Error(format!(
                    "truncated tool call: the output limit was reached during the call to {}, so it was not run",
                    call.name
                )),
                (_, Ok(arguments)) if !call.name.is_empty() => {
                    ParseEvent::ToolCall(ParsedToolCall {
                        name: call.name,
                        arguments,
                    })
                }
                (_, Ok(_)) => ParseEvent::Error("invalid tool call: it has no name".into()),
                (_, Err(why)) => {
                    ParseEvent::Error(format!("invalid tool call to {}: {why}", call.name))
                }
            })
            .collect()
    }
}

/// Splits streamed content: decides from its first characters whether the server left the think block
/// in it (no reasoning parser), then runs our parser in the matching mode.
struct ContentStream {
    thinking_allowed: bool,
    undecided: String,
    parser: Option<OutputParser>,
}

impl ContentStream {
    fn feed(&mut self, delta: &str, server_split_reasoning: bool, out: &mut Vec<ParseEvent>) {
        if let Some(parser) = self.parser.as_mut() {
            out.extend(parser.feed(delta));
            return;
        }
        self.undecided.push_str(delta);
        let start = self.undecided.trim_start();
        let decided = start.len() >= "<think>".len() || !"<think>".starts_with(start);
        if decided {
            let has_think =
                self.thinking_allowed && !server_split_reasoning && start.starts_with("<think>");
            let mut parser = OutputParser::new(has_think);
            out.extend(parser.feed(&std::mem::take(&mut self.undecided)));
            self.parser = Some(parser);
        }
    }

    fn finish(mut self, finish: FinishReason, out: &mut Vec<ParseEvent>) -> ParsedOutput {
        let mut parser = self
            .parser
            .take()
            .unwrap_or_else(|| OutputParser::new(false));
        out.extend(parser.feed(&std::mem::take(&mut self.undecided)));
        out.extend(parser.finish(finish));
        parser.into_output()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn read(body: &[u8]) -> Result<BackendResponse> {
        read_stream(body, true, &AtomicBool::new(false), &mut |_| {})
    }

    fn sse(chunks: &[Json]) -> Vec<u8> {
        let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        body.into_bytes()
    }

    fn calls(deltas: &[Json]) -> Vec<Json> {
        let mut chunks: Vec<Json> = deltas
            .iter()
            .map(|d| json!({"choices": [{"delta": {"tool_calls": [d]}}]}))
            .collect();
        chunks.push(json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}));
        chunks
    }

    #[test]
    fn a_huge_tool_call_index_is_an_error_not_an_allocation() {
        let body = sse(&calls(&[
            json!({"index": 1_000_000_000_000u64, "function": {"name": "f", "arguments": "{}"}}),
        ]));
        let err = read(&body).expect_err("refused");
        assert!(
            err.to_string().contains("tool call index 1000000000000"),
            "{err}"
        );
    }

    #[test]
    fn skipped_indices_and_missing_indices_assemble_the_calls_that_came() {
        let body = sse(&calls(&[
            json!({"index": 2, "id": "a", "function": {"name": "f", "arguments": "{\"x\":"}}),
            json!({"index": 2, "function": {"arguments": " 1}"}}),
            json!({"id": "b", "function": {"name": "g", "arguments": "{}"}}),
            json!({"function": {"arguments": ""}}),
        ]));
        let response = read(&body).unwrap();
        let names: Vec<&str> = response
            .output
            .tool_calls
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["f", "g"]);
        assert_eq!(response.output.tool_calls[0].arguments["x"], 1);
        assert!(
            response.output.errors.is_empty(),
            "{:?}",
            response.output.errors
        );
    }

    #[test]
    fn multi_line_data_is_one_chunk() {
        let body = b"data: {\"choices\": [{\"delta\":\ndata: {\"content\": \"hi\"}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(read(body).unwrap().output.content, "hi");
    }

    #[test]
    fn a_stream_cut_before_the_end_is_an_error() {
        let body = b"data: {\"choices\": [{\"delta\": {\"content\": \"half an ans\"}}]}\n\n";
        let err = read(body).expect_err("refused");
        assert!(err.to_string().contains("before the answer ended"), "{err}");
        // Interrupted, the same stream is what came so far.
        let interrupted = read_stream(&body[..], false, &AtomicBool::new(true), &mut |_| {});
        let response = interrupted.unwrap();
        assert_eq!(response.finish_reason, FinishReason::Length);
        assert_eq!(response.output.content, "half an ans");
    }

    /// SSE-shaped bodies whose chunks are arbitrary JSON values of the right shape or not.
    fn chunk() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<i64>().prop_map(|v| json!(v)),
            any::<u64>().prop_map(|v| json!(v)),
            "[a-z<>/_ {}\"]{0,12}".prop_map(|s| json!(s)),
        ];
        let value = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("index"),
                            Just("id"),
                            Just("function"),
                            Just("name"),
                            Just("arguments"),
                            Just("content"),
                            Just("reasoning_content"),
                            Just("tool_calls"),
                            Just("finish_reason"),
                            Just("usage"),
                            Just("error")
                        ],
                        inner
                    ),
                    0..4
                )
                .prop_map(|kv| Json::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        });
        value.prop_map(|delta| {
            json!({"choices": [{"delta": delta, "finish_reason": null}]}).to_string()
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_an_answer_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read(&bytes);
        }

        #[test]
        fn arbitrary_chunks_are_an_answer_or_an_error(
            chunks in proptest::collection::vec(chunk(), 0..12),
            raw in proptest::collection::vec("[ -~]{0,30}", 0..3),
        ) {
            let mut body = String::new();
            for c in chunks.iter().chain(&raw) {
                body.push_str(&format!("data: {c}\n\n"));
            }
            body.push_str("data: [DONE]\n\n");
            let _ = read_stream(body.as_bytes(), true, &AtomicBool::new(false), &mut |_| {});
        }
    }
}
