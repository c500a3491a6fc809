//! An OpenAI-compatible `/v1/chat/completions` server (vLLM, SGLang, llama.cpp server) as a backend:
//! streaming SSE, tools sent natively, `chat_template_kwargs.enable_thinking` for Qwen3. Reasoning is
//! read from `reasoning_content` (or `reasoning`) deltas; a server without a reasoning parser sends the
//! think block inside content, which our own parser then splits. Calls arrive either as native
//! `tool_calls` deltas or as `<tool_call>` text in content; both become calls.

use super::{Backend, BackendRequest, BackendResponse};
use crate::chat::{
    FinishReason, Message, OutputParser, ParseEvent, ParsedOutput, ParsedToolCall,
    arguments_from_text,
};
use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader};
use std::time::Duration;

pub struct OpenAiBackend {
    client: reqwest::blocking::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    retries: usize,
}

/// Waits before retry i (0-based): 0.5 s, 1 s, 2 s, ...
fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(500 << attempt.min(5))
}

impl OpenAiBackend {
    /// `base_url` is the server root or its `/v1`.
    pub fn new(base_url: &str, api_key: Option<String>, model: String) -> Result<Self> {
        let base = base_url.trim_end_matches('/');
        let url = if base.ends_with("/v1") {
            format!("{base}/chat/completions")
        } else {
            format!("{base}/v1/chat/completions")
        };
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .context("creating the HTTP client")?;
        Ok(OpenAiBackend {
            client,
            url,
            api_key,
            model,
            retries: 3,
        })
    }

    fn body(&self, request: &BackendRequest) -> Json {
        let s = &request.sampling;
        let mut body = json!({
            "model": self.model,
            "messages": request.messages.iter().map(wire_message).collect::<Vec<_>>(),
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": request.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "top_k": s.top_k,
            "min_p": s.min_p,
            "presence_penalty": s.presence_penalty,
            "repetition_penalty": s.repetition_penalty,
            "seed": s.seed,
            "chat_template_kwargs": {"enable_thinking": request.thinking},
        });
        if !request.tools.is_empty() {
            body["tools"] = Json::Array(request.tools.to_vec());
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        body
    }

    /// Sends the request, retrying connection failures and 5xx answers; 4xx answers are final.
    fn send(&self, body: &Json) -> Result<reqwest::blocking::Response> {
        let mut attempt = 0;
        loop {
            let mut builder = self.client.post(&self.url).json(body);
            if let Some(key) = &self.api_key {
                builder = builder.bearer_auth(key);
            }
            let failure = match builder.send() {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_client_error() => {
                    let status = response.status();
                    let text = response.text().unwrap_or_default();
                    bail!("{} answered {status}: {}", self.url, text.trim());
                }
                Ok(response) => format!("{} answered {}", self.url, response.status()),
                Err(e) => format!("cannot reach {}: {e}", self.url),
            };
            if attempt >= self.retries {
                bail!("{failure} (gave up after {} attempts)", attempt + 1);
            }
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }
}

/// A message in the API's shape: tool-call arguments as JSON text.
fn wire_message(message: &Message) -> Json {
    let mut value = message.to_json();
    if let Some(calls) = value.get_mut("tool_calls").and_then(Json::as_array_mut) {
        for call in calls {
            let arguments = call["function"]["arguments"].take();
            call["function"]["arguments"] = Json::String(arguments.to_string());
        }
    }
    value
}

/// A native tool call being assembled from deltas.
#[derive(Default)]
struct PartialCall {
    name: String,
    arguments: String,
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

impl Backend for OpenAiBackend {
    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        let response = self.send(&self.body(request))?;
        let mut content = ContentStream {
            thinking_allowed: request.thinking,
            undecided: String::new(),
            parser: None,
        };
        let mut reasoning = String::new();
        let mut calls: Vec<PartialCall> = Vec::new();
        let mut finish = FinishReason::Stop;
        let (mut prompt_tokens, mut completion_tokens) = (0, 0);
        let mut raw = String::new();
        for line in BufReader::new(response).lines() {
            if request.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
                finish = FinishReason::Length;
                break;
            }
            let line = line.context("the server's stream broke off")?;
            let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Json = serde_json::from_str(data)
                .with_context(|| format!("unreadable stream chunk: {data}"))?;
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
                let index = call["index"].as_u64().unwrap_or(calls.len() as u64) as usize;
                if calls.len() <= index {
                    calls.resize_with(index + 1, PartialCall::default);
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    calls[index].name.push_str(name);
                }
                if let Some(arguments) = call["function"]["arguments"].as_str() {
                    calls[index].arguments.push_str(arguments);
                }
            }
            match choice["finish_reason"].as_str() {
                Some("length") => finish = FinishReason::Length,
                Some(_) => finish = FinishReason::Stop,
                None => {}
            }
            events.iter().for_each(&mut *on_event);
        }
        let mut events = Vec::new();
        let mut output = content.finish(finish, &mut events);
        if !reasoning.is_empty() {
            output.reasoning_content = Some(reasoning.trim_matches('\n').to_string());
        } else if !request.thinking {
            output.reasoning_content = None;
        }
        for call in calls {
            let event = match (finish, arguments_from_text(&call.arguments)) {
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
            };
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
}
