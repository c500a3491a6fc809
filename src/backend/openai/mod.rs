//! An OpenAI-compatible `/v1/chat/completions` server (vLLM, SGLang, llama.cpp server) as a backend:
//! streaming SSE, tools sent natively, `chat_template_kwargs.enable_thinking` for Qwen3. Reasoning is
//! read from `reasoning_content` (or `reasoning`) deltas; a server without a reasoning parser sends the
//! think block inside content, which our own parser then splits. Calls arrive either as native
//! `tool_calls` deltas or as `<tool_call>` text in content; both become calls.
//!
//! `transport` runs the HTTP exchange on a thread (so Ctrl-C and the read timeout work while the server
//! is silent), `sse` splits the body into events, `stream` turns events into the response.

mod sse;
mod stream;
mod transport;

use super::{Backend, BackendRequest, BackendResponse};
use crate::chat::{Message, ParseEvent};
use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use std::time::Duration;

/// How long the server may stay silent (before its headers, or between chunks) by default: a long
/// prefill on a busy server takes minutes before the first token.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);

pub struct OpenAiBackend {
    client: reqwest::blocking::Client,
    url: String,
    api_key: Option<String>,
    model: String,
    retries: usize,
    read_timeout: Duration,
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
            read_timeout: DEFAULT_READ_TIMEOUT,
        })
    }

    /// How long the server may stay silent before a call fails (`model.read_timeout`).
    pub fn with_read_timeout(mut self, read_timeout: Duration) -> Self {
        self.read_timeout = read_timeout;
        self
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
}

/// One request as the transport thread needs it (owned: the thread may outlive the call).
struct Exchange {
    client: reqwest::blocking::Client,
    url: String,
    api_key: Option<String>,
    retries: usize,
    /// Applies to the wait for headers and to each read of the body, so the thread ends after a
    /// silence as the caller does. A second longer than the caller's, whose message is the clearer.
    timeout: Duration,
    body: Json,
}

impl Exchange {
    /// Sends the request, retrying connection failures and 5xx answers while the caller still waits;
    /// 4xx answers are final, and so is a timeout (the server may be working: resending would
    /// start the generation again).
    fn send(self, wanted: transport::Wanted) -> Result<reqwest::blocking::Response> {
        let mut attempt = 0;
        loop {
            let mut builder = self
                .client
                .post(&self.url)
                .timeout(self.timeout)
                .json(&self.body);
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
                Err(e) if e.is_timeout() => bail!("{} sent no answer in time: {e}", self.url),
                Err(e) => format!("cannot reach {}: {e}", self.url),
            };
            if attempt >= self.retries || !wanted.get() {
                bail!("{failure} (gave up after {} attempts)", attempt + 1);
            }
            std::thread::sleep(backoff(attempt));
            if !wanted.get() {
                bail!("{failure} (the caller stopped waiting)");
            }
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

impl Backend for OpenAiBackend {
    fn complete(
        &mut self,
        request: &BackendRequest,
        on_event: &mut dyn FnMut(&ParseEvent),
    ) -> Result<BackendResponse> {
        let exchange = Exchange {
            client: self.client.clone(),
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            retries: self.retries,
            timeout: self.read_timeout.saturating_add(Duration::from_secs(1)),
            body: self.body(request),
        };
        let body = transport::spawn(
            move |wanted| exchange.send(wanted),
            request.interrupt,
            self.read_timeout,
        );
        stream::read_stream(body, request.thinking, request.interrupt, on_event)
    }
}
