//! Streaming parser for Qwen3 output: splits thinking from the answer and extracts `<tool_call>` blocks.
//!
//! Text arrives in arbitrary chunks (tokens decode to any split of a tag). Every decision that depends on
//! text not yet seen is deferred, so the events of any chunking add up to the one-shot parse. The
//! invariants are in ARCHITECTURE.md's code map (`src/chat/`, `parser.rs`); each rule and why it exists
//! is at the state it concerns (`Mode`, `OutputParser::step`).

use super::lenient_json;
use serde::Serialize;
use serde_json::{Map, Value as Json};

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// How generation ended; decides whether an unclosed tool call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-turn token or stop string: the model meant to end here.
    Stop,
    /// The token limit cut the output: anything unfinished is truncated.
    Length,
}

/// A tool call the model asked for, with arguments already validated as a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParsedToolCall {
    pub name: String,
    pub arguments: Map<String, Json>,
}

/// What the parser reports as text streams in.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseEvent {
    ReasoningDelta(String),
    ContentDelta(String),
    ToolCall(ParsedToolCall),
    /// A tool-call block that cannot run; the message (with the raw text) is meant for the model.
    Error(String),
}

/// The whole parse of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ParsedOutput {
    /// None when thinking is disabled; otherwise the thinking text, newlines stripped at both ends.
    pub reasoning_content: Option<String>,
    /// Text outside tool-call blocks, segments joined unchanged, newlines stripped at both ends.
    pub content: String,
    pub tool_calls: Vec<ParsedToolCall>,
    pub errors: Vec<String>,
}

impl ParsedOutput {
    /// Parses complete text in one piece.
    pub fn parse(text: &str, thinking: bool, finish: FinishReason) -> Self {
        let mut parser = OutputParser::new(thinking);
        parser.feed(text);
        parser.finish(finish);
        parser.into_output()
    }
}

#[derive(Debug)]
enum Mode {
    /// Before the first non-newline text of a thinking turn: a `<think>` here is dropped.
    ReasoningStart,
    Reasoning,
    /// Inside reasoning, a `<tool_call>` appeared. If `</think>` follows, it was thought about, not made;
    /// if generation ends first, the model forgot to close its thinking and it is a real call.
    ReasoningAtCall,
    Content,
    ToolCall,
}

/// Incremental parser; feed chunks, then call `finish` once.
#[derive(Debug)]
pub struct OutputParser {
    mode: Mode,
    pending: String,
    reasoning: NewlineTrimmer,
    content: NewlineTrimmer,
    output: ParsedOutput,
    /// Whether `<tool_call>` blocks are calls; off, they are text like any other (see `text_only_calls`).
    tool_calls: bool,
    /// Whether a block that is not a valid call stays in the content as text (see
    /// `malformed_calls_as_text`) rather than becoming an error for the model.
    malformed_as_text: bool,
}

impl OutputParser {
    /// `thinking` is whether the prompt left the think block open (enable_thinking not false).
    pub fn new(thinking: bool) -> Self {
        OutputParser {
            mode: if thinking {
                Mode::ReasoningStart
            } else {
                Mode::Content
            },
            pending: String::new(),
            reasoning: NewlineTrimmer::default(),
            content: NewlineTrimmer::default(),
            output: ParsedOutput {
                reasoning_content: thinking.then(String::new),
                ..ParsedOutput::default()
            },
            tool_calls: true,
            malformed_as_text: false,
        }
    }

    /// A parser that leaves `<tool_call>` blocks in the text (reasoning or content) untouched: for a
    /// server answering a request that sent no tools, where the client renders and parses tools itself
    /// (Qwen-Agent's default), as vLLM does without a tool parser.
    pub fn text_only_calls(mut self) -> Self {
        self.tool_calls = false;
        self
    }

    /// A parser that leaves a block that is not a valid call (bad JSON, no name, cut off) in the
    /// content as the model wrote it, tags included: for a server, whose client should see what the
    /// model wrote rather than nothing, as vLLM's hermes parser leaves an unparsable call.
    pub fn malformed_calls_as_text(mut self) -> Self {
        self.malformed_as_text = true;
        self
    }

    /// The tags that may start a decision in the current mode's text.
    fn call_open(&self) -> &'static [&'static str] {
        if self.tool_calls { &[CALL_OPEN] } else { &[] }
    }

    /// Where the next `<tool_call>` opens in `pending`, if calls are parsed at all.
    fn find_call(&self) -> Option<usize> {
        self.call_open()
            .first()
            .and_then(|tag| self.pending.find(tag))
    }

    /// Consumes a chunk and returns the events that are now certain.
    pub fn feed(&mut self, chunk: &str) -> Vec<ParseEvent> {
        self.pending.push_str(chunk);
        let mut events = Vec::new();
        while self.step(&mut events) {}
        events
    }

    /// Ends the stream: held-back partial tags become text and an open tool call is judged.
    pub fn finish(&mut self, reason: FinishReason) -> Vec<ParseEvent> {
        let mut events = Vec::new();
        while self.step(&mut events) {}
        if let Mode::ReasoningAtCall = self.mode {
            self.mode = Mode::Content;
            while self.step(&mut events) {}
        }
        let rest = std::mem::take(&mut self.pending);
        match self.mode {
            Mode::ReasoningStart | Mode::Reasoning => self.emit_reasoning(&rest, &mut events),
            Mode::Content => self.emit_content(&rest, &mut events),
            Mode::ToolCall => match reason {
                FinishReason::Stop => match parse_call(&rest, false) {
                    Ok(call) => self.record(ParseEvent::ToolCall(call), &mut events),
                    Err(why) => self.reject_call(
                        format!(
                            "unfinished tool call: generation ended before </tool_call> and {why}. \
                             The block was: {}",
                            rest.trim()
                        ),
                        &rest,
                        &mut events,
                    ),
                },
                FinishReason::Length => self.reject_call(
                    format!(
                        "truncated tool call: the output limit was reached before </tool_call>, so \
                         it was not run. The block was: {}",
                        rest.trim()
                    ),
                    &rest,
                    &mut events,
                ),
            },
            Mode::ReasoningAtCall => unreachable!("switched to content above"),
        }
        events
    }

    /// The aggregate of every event so far.
    pub fn output(&self) -> &ParsedOutput {
        &self.output
    }

    pub fn into_output(self) -> ParsedOutput {
        self.output
    }

    /// Makes one decision on `pending`; false when more input is needed.
    fn step(&mut self, events: &mut Vec<ParseEvent>) -> bool {
        match self.mode {
            Mode::ReasoningStart => {
                let trimmed = self.pending.trim_start_matches('\n');
                if trimmed.is_empty() || (THINK_OPEN.starts_with(trimmed) && trimmed != THINK_OPEN)
                {
                    return false;
                }
                let skip = self.pending.len() - trimmed.len()
                    + if trimmed.starts_with(THINK_OPEN) {
                        THINK_OPEN.len()
                    } else {
                        0
                    };
                self.pending.drain(..skip);
                self.mode = Mode::Reasoning;
                true
            }
            Mode::Reasoning => {
                let close = self.pending.find(THINK_CLOSE);
                let call = self.find_call();
                match (close, call) {
                    (Some(c), call) if call.is_none_or(|t| c < t) => {
                        let text: String = self.pending.drain(..c + THINK_CLOSE.len()).collect();
                        self.emit_reasoning(&text[..c], events);
                        self.mode = Mode::Content;
                        true
                    }
                    (_, Some(t)) => {
                        let text: String = self.pending.drain(..t).collect();
                        self.emit_reasoning(&text, events);
                        self.mode = Mode::ReasoningAtCall;
                        true
                    }
                    (_, None) => {
                        let tags = [&[THINK_CLOSE][..], self.call_open()].concat();
                        let keep = partial_tag_len(&self.pending, &tags);
                        let text: String =
                            self.pending.drain(..self.pending.len() - keep).collect();
                        self.emit_reasoning(&text, events);
                        false
                    }
                }
            }
            Mode::ReasoningAtCall => match self.pending.find(THINK_CLOSE) {
                Some(c) => {
                    let text: String = self.pending.drain(..c + THINK_CLOSE.len()).collect();
                    self.emit_reasoning(&text[..c], events);
                    self.mode = Mode::Content;
                    true
                }
                None => false,
            },
            Mode::Content => match self.find_call() {
                Some(t) => {
                    let text: String = self.pending.drain(..t + CALL_OPEN.len()).collect();
                    self.emit_content(&text[..t], events);
                    self.mode = Mode::ToolCall;
                    true
                }
                None => {
                    let keep = partial_tag_len(&self.pending, self.call_open());
                    let text: String = self.pending.drain(..self.pending.len() - keep).collect();
                    self.emit_content(&text, events);
                    false
                }
            },
            Mode::ToolCall => match self.pending.find(CALL_CLOSE) {
                Some(end) => {
                    let block: String = self.pending.drain(..end + CALL_CLOSE.len()).collect();
                    let body = &block[..end];
                    match parse_call(body, true) {
                        Ok(call) => self.record(ParseEvent::ToolCall(call), events),
                        Err(why) => self.reject_call(
                            format!(
                                "invalid tool call: {why}. Write the call as <tool_call>\n{{\"name\": \
                                 <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>. \
                                 The block was: {}",
                                body.trim()
                            ),
                            &block,
                            events,
                        ),
                    }
                    self.mode = Mode::Content;
                    true
                }
                None => false,
            },
        }
    }

    /// A block that is not a valid call: an error for the model, or (`malformed_calls_as_text`) its
    /// text, opening tag included, back in the content. `block` is the text after `<tool_call>`.
    fn reject_call(&mut self, message: String, block: &str, events: &mut Vec<ParseEvent>) {
        if self.malformed_as_text {
            self.emit_content(&format!("{CALL_OPEN}{block}"), events);
        } else {
            self.record(ParseEvent::Error(message), events);
        }
    }

    fn emit_reasoning(&mut self, text: &str, events: &mut Vec<ParseEvent>) {
        if let Some(delta) = self.reasoning.push(text) {
            self.record(ParseEvent::ReasoningDelta(delta), events);
        }
    }

    fn emit_content(&mut self, text: &str, events: &mut Vec<ParseEvent>) {
        if let Some(delta) = self.content.push(text) {
            self.record(ParseEvent::ContentDelta(delta), events);
        }
    }

    fn record(&mut self, event: ParseEvent, events: &mut Vec<ParseEvent>) {
        match &event {
            ParseEvent::ReasoningDelta(d) => self
                .output
                .reasoning_content
                .get_or_insert_with(String::new)
                .push_str(d),
            ParseEvent::ContentDelta(d) => self.output.content.push_str(d),
            ParseEvent::ToolCall(call) => self.output.tool_calls.push(call.clone()),
            ParseEvent::Error(e) => self.output.errors.push(e.clone()),
        }
        events.push(event);
    }
}

/// Length of the longest suffix of `text` that could still grow into one of `tags`.
fn partial_tag_len(text: &str, tags: &[&str]) -> usize {
    let longest = tags
        .iter()
        .map(|t| t.len() - 1)
        .max()
        .unwrap_or(0)
        .min(text.len());
    (1..=longest)
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && tags.iter().any(|t| t.starts_with(&text[text.len() - n..]))
        })
        .unwrap_or(0)
}

/// Streams text with leading newlines dropped and trailing ones held until more text follows, so the
/// streamed deltas add up to the `.strip("\n")`-ed whole.
#[derive(Debug, Default)]
struct NewlineTrimmer {
    started: bool,
    held_newlines: usize,
}

impl NewlineTrimmer {
    fn push(&mut self, text: &str) -> Option<String> {
        let text = if self.started {
            text
        } else {
            text.trim_start_matches('\n')
        };
        let body = text.trim_end_matches('\n');
        let trailing = text.len() - body.len();
        if body.is_empty() {
            if self.started {
                self.held_newlines += trailing;
            }
            return None;
        }
        self.started = true;
        let delta = "\n".repeat(self.held_newlines) + body;
        self.held_newlines = trailing;
        Some(delta)
    }
}

/// Turns the text of one block into a call. `closed` says `</tool_call>` ended it, which makes repairing
/// a missing final brace safe.
fn parse_call(body: &str, closed: bool) -> Result<ParsedToolCall, String> {
    let text = body.trim();
    if text.is_empty() {
        return Err("the block is empty".into());
    }
    let value = serde_json::from_str::<Json>(text)
        .ok()
        .or_else(|| lenient_json::parse(text, closed))
        .ok_or("its text is not valid JSON")?;
    let Json::Object(mut object) = value else {
        return Err("its JSON is not an object".into());
    };
    let name = match object.remove("name") {
        Some(Json::String(name)) if !name.trim().is_empty() => name,
        Some(_) => return Err("\"name\" must be a non-empty string".into()),
        None => return Err("it has no \"name\"".into()),
    };
    let arguments = object
        .remove("arguments")
        .or_else(|| object.remove("parameters"));
    let arguments = match arguments {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(map)) => map,
        Some(Json::String(inner)) => arguments_from_text(&inner)?,
        Some(_) => return Err("\"arguments\" must be a JSON object".into()),
    };
    Ok(ParsedToolCall { name, arguments })
}

/// Arguments sent as JSON text (OpenAI's wire format, or a model double-encoding them): parsed strictly,
/// then leniently; empty text is no arguments.
pub fn arguments_from_text(text: &str) -> Result<Map<String, Json>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Json>(text)
        .ok()
        .or_else(|| lenient_json::parse(text, false))
    {
        Some(Json::Object(map)) => Ok(map),
        _ => Err(format!(
            "\"arguments\" is a string that does not hold a JSON object: {text}"
        )),
    }
}
