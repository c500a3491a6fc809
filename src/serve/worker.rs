//! The engine's thread: it owns the one backend and answers queued requests one at a time, in arrival
//! order. Backend calls block (the CPU engine, the scripted replay), so they never run on the async
//! executor; the handlers wait on a channel instead.

use super::error::ApiError;
use super::metrics::Metrics;
use super::request::{ChatRequest, CompletionRequest, Settings};
use crate::agent::assemble::{AssembleOptions, build_backend};
use crate::agent::{DEFAULT_MAX_NEW_TOKENS, soft_switch_allows_thinking};
use crate::backend::{
    Backend, BackendRequest, BackendResponse, CallParsing, ContextUse, LogprobsRequest,
    TextRequest, TokenLogprob,
};
use crate::chat::{AnswerFormat, ParseEvent};
use crate::config::{GenerateSpec, ResolvedAgent};
use crate::engine::{GrammarError, SamplingParams};
use anyhow::{Context, Result};
use axum::http::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use tokio::sync::mpsc::UnboundedSender;

/// What the engine thread reports about one request.
#[derive(Debug)]
pub enum WorkerEvent {
    Parse(ParseEvent),
    /// A generated token's log-probabilities (when asked), sent before the text it makes.
    Logprobs(TokenLogprob),
    Done(Box<Result<BackendResponse, ApiError>>),
}

/// What a request asks the engine for.
#[derive(Debug)]
pub enum Work {
    /// `/v1/chat/completions`: a conversation through the template and the parser.
    Chat(ChatRequest),
    /// `/v1/completions`: a raw prompt continued as text.
    Text(CompletionRequest),
}

/// One queued request.
pub struct Job {
    pub work: Work,
    pub events: UnboundedSender<WorkerEvent>,
    /// Set when the client goes away: a queued job is skipped, a running one stops generating.
    pub cancel: Arc<AtomicBool>,
}

/// The handle handlers queue on.
pub struct Worker {
    jobs: mpsc::SyncSender<Job>,
    /// Requests waiting (not counting the one being answered).
    pub queued: Arc<AtomicUsize>,
}

impl Worker {
    /// Builds the backend on a new thread (so it never has to move between threads) and waits until
    /// it is ready; at most `queue` requests wait behind the one being answered.
    pub fn start(
        definition: ResolvedAgent,
        options: AssembleOptions,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(queue);
        let (ready, started) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let depth = queued.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let mut backend = match build_backend(&definition, &options) {
                    Ok(backend) => {
                        let _ = ready.send(Ok(()));
                        backend
                    }
                    Err(error) => return ready.send(Err(error)).unwrap_or(()),
                };
                let defaults = definition.agent.generate;
                for job in inbox {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    if job.cancel.load(Ordering::Relaxed) {
                        metrics.cancelled(0);
                        continue;
                    }
                    let result = answer(backend.as_mut(), &defaults, &job);
                    // Until `Done` is sent the handler holds the flag, so it is set only if the client left.
                    if job.cancel.load(Ordering::Relaxed) {
                        metrics.cancelled(result.as_ref().map_or(0, |r| r.completion_tokens));
                    }
                    let _ = job.events.send(WorkerEvent::Done(Box::new(result)));
                }
            })
            .context("starting the engine thread")?;
        started
            .recv()
            .context("the engine thread ended while loading the model")??;
        Ok(Worker { jobs, queued })
    }

    /// Queues a job; a full queue is a 503 the client may retry.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(job).map_err(|error| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            match error {
                mpsc::TrySendError::Full(_) => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is busy: every queue slot is taken; retry after a second, or \
                         start the server with a larger --queue",
                    )
                },
                mpsc::TrySendError::Disconnected(_) => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine thread has stopped; restart the server",
                ),
            }
        })
    }
}

/// Answers one request: the served defaults under the request's settings, the prompt checked against
/// the context, then the backend's call with its events forwarded as they come.
fn answer(
    backend: &mut dyn Backend,
    defaults: &GenerateSpec,
    job: &Job,
) -> Result<BackendResponse, ApiError> {
    let forward = &mut |event: ParseEvent| {
        if job.events.send(WorkerEvent::Parse(event)).is_err() {
            job.cancel.store(true, Ordering::Relaxed);
        }
    };
    let settings = match &job.work {
        Work::Chat(request) => &request.settings,
        Work::Text(request) => &request.settings,
    };
    if settings.logprobs.is_some() && !backend.reports_logprobs() {
        return Err(ApiError::invalid(
            "logprobs",
            "this server's backend reports no logprobs (only the local engine does): leave \
             `logprobs` out",
        ));
    }
    let sink = |token: TokenLogprob| {
        if job.events.send(WorkerEvent::Logprobs(token)).is_err() {
            job.cancel.store(true, Ordering::Relaxed);
        }
    };
    let logprobs = settings
        .logprobs
        .map(|top| LogprobsRequest { top, sink: &sink });
    let failed = |e: anyhow::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("generation failed: {e:#}"),
        )
    };
    match &job.work {
        Work::Chat(request) => {
            let spec = spec(defaults, &request.settings);
            let thinking = request.thinking.or(spec.thinking).unwrap_or(true);
            let mode = thinking && soft_switch_allows_thinking(&request.messages);
            let mut call = BackendRequest {
                messages: &request.messages,
                tools: &request.tools,
                thinking,
                sampling: spec.sampling(backend.default_sampling(mode)),
                max_new_tokens: spec.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
                stop: spec.stop.as_deref().unwrap_or_default(),
                interrupt: &job.cancel,
                calls: if request.tools.is_empty() {
                    CallParsing::Text
                } else {
                    CallParsing::CallsElseText
                },
                format: request.format.as_ref(),
                logprobs,
            };
            let measured = backend.measure(&call).map_err(|e| {
                ApiError::invalid(
                    "messages",
                    format!("the conversation cannot be rendered: {e:#}"),
                )
            })?;
            call.max_new_tokens =
                room(measured, call.max_new_tokens, &request.settings, "messages")?;
            backend
                .complete(&call, &mut |event| forward(event.clone()))
                .map_err(|e| match e.downcast_ref::<GrammarError>() {
                    Some(error) => ApiError::invalid(
                        match request.format {
                            Some(AnswerFormat::Json(_)) => "response_format",
                            _ => "tools",
                        },
                        format!("the requested output format cannot be enforced: {error}"),
                    ),
                    None => failed(e),
                })
        }
        Work::Text(request) => {
            let spec = spec(defaults, &request.settings);
            let sampling: SamplingParams =
                spec.sampling(backend.default_sampling(spec.thinking.unwrap_or(true)));
            let measured = backend.measure_text(&request.prompt).map_err(|e| {
                ApiError::invalid("prompt", format!("the prompt cannot be tokenized: {e:#}"))
            })?;
            let max_new_tokens = spec.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
            let call = TextRequest {
                prompt: &request.prompt,
                sampling,
                max_new_tokens: room(measured, max_new_tokens, &request.settings, "prompt")?,
                stop: spec.stop.as_deref().unwrap_or_default(),
                interrupt: &job.cancel,
                logprobs,
            };
            backend
                .complete_text(&call, &mut |text| {
                    forward(ParseEvent::ContentDelta(text.to_string()))
                })
                .map_err(failed)
        }
    }
}

/// The served `generate` defaults with the request's settings laid over them.
fn spec(defaults: &GenerateSpec, settings: &Settings) -> GenerateSpec {
    let mut spec = defaults.clone();
    spec.overlay(&settings.generate);
    spec
}

/// The tokens the answer may take: `max_new_tokens` within what the prompt leaves of the context. A
/// prompt that fills it, or an explicit `max_tokens` beyond it, is a 400 naming `param`.
fn room(
    measured: Option<ContextUse>,
    max_new_tokens: usize,
    settings: &Settings,
    param: &str,
) -> Result<usize, ApiError> {
    let Some(used) = measured else {
        return Ok(max_new_tokens);
    };
    let room = used.context_length.saturating_sub(used.prompt_tokens);
    let refuse = |message: String| {
        Err(ApiError::invalid(param, message).with_code("context_length_exceeded"))
    };
    if room == 0 {
        return refuse(format!(
            "the prompt is {} tokens and the context holds {}: shorten it, or serve with a larger \
             model.context_length",
            used.prompt_tokens, used.context_length
        ));
    }
    if settings.max_tokens_given && max_new_tokens > room {
        return refuse(format!(
            "the prompt is {} tokens and max_tokens asks for {max_new_tokens} more, beyond the \
             context of {}: ask for at most {room}",
            used.prompt_tokens, used.context_length
        ));
    }
    Ok(max_new_tokens.min(room))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        let request = ChatRequest::parse(br#"{"messages": [{"role": "user", "content": "hi"}]}"#)
            .expect("a valid request");
        Job {
            work: Work::Chat(request),
            events: tokio::sync::mpsc::unbounded_channel().0,
            cancel: Arc::default(),
        }
    }

    #[test]
    fn a_full_queue_is_a_503_to_retry_and_a_stopped_engine_a_500() {
        let (jobs, inbox) = mpsc::sync_channel(2);
        let worker = Worker {
            jobs,
            queued: Arc::default(),
        };
        worker.submit(job()).unwrap();
        worker.submit(job()).unwrap();
        let full = worker.submit(job()).unwrap_err();
        assert_eq!(
            (full.status, full.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        assert!(full.message.contains("--queue"), "{}", full.message);
        assert_eq!(worker.queued.load(Ordering::Relaxed), 2);
        drop(inbox);
        let stopped = worker.submit(job()).unwrap_err();
        assert_eq!(stopped.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(worker.queued.load(Ordering::Relaxed), 2);
    }
}
