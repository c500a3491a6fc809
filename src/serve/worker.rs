//! The engine threads: each owns a backend and answers queued requests one at a time, taking them in
//! arrival order from one queue; with a model shared through `engine::batch` their passes run
//! together. Backend calls block (the CPU engine, the scripted replay), so they never run on the async
//! executor; the handlers wait on a channel instead.

use super::error::ApiError;
use super::metrics::Metrics;
use super::request::{ChatRequest, CompletionRequest, Settings};
use crate::agent::backend_pool::BackendPool;
use crate::agent::{DEFAULT_MAX_NEW_TOKENS, soft_switch_allows_thinking};
use crate::backend::{
    Backend, BackendRequest, BackendResponse, CallParsing, ContextUse, LogprobsRequest,
    TextRequest, TokenLogprob,
};
use crate::chat::{AnswerFormat, ParseEvent};
use crate::config::GenerateSpec;
use crate::engine::batch::Batcher;
use crate::engine::{GrammarError, SamplingParams};
use anyhow::{Context, Result};
use axum::http::StatusCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
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
    /// Requests waiting (not counting those being answered).
    pub queued: Arc<AtomicUsize>,
    /// The shared model's batcher, when the engine threads share one.
    pub batcher: Option<Arc<Batcher>>,
}

/// The next job from the shared queue; None once the server is gone.
fn next_job(inbox: &Mutex<mpsc::Receiver<Job>>) -> Option<Job> {
    let inbox = inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    inbox.recv().ok()
}

impl Worker {
    /// Starts `pool.size()` engine threads, each building its backend where it runs (backends never
    /// move between threads), and waits until all are ready; at most `queue` requests wait behind
    /// the ones being answered. The threads take jobs from one queue, so a request goes to whichever
    /// is free; with a shared model their passes are batched.
    pub fn start(pool: BackendPool, queue: usize, metrics: Arc<Metrics>) -> Result<Self> {
        let (jobs, inbox) = mpsc::sync_channel::<Job>(queue);
        let inbox = Arc::new(Mutex::new(inbox));
        let (ready, started) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(pool);
        for index in 0..pool.size() {
            let (pool, inbox, ready) = (pool.clone(), inbox.clone(), ready.clone());
            let (depth, metrics) = (queued.clone(), metrics.clone());
            std::thread::Builder::new()
                .name(format!("engine-{index}"))
                .spawn(move || {
                    let mut backend = match pool.backend() {
                        Ok(backend) => {
                            let _ = ready.send(Ok(()));
                            backend
                        }
                        Err(error) => return ready.send(Err(error)).unwrap_or(()),
                    };
                    let defaults = &pool.definition().agent.generate;
                    // The lock is held only while waiting for the next job, never while answering.
                    while let Some(job) = next_job(&inbox) {
                        depth.fetch_sub(1, Ordering::Relaxed);
                        if job.cancel.load(Ordering::Relaxed) {
                            metrics.cancelled(0);
                            continue;
                        }
                        let result = answer(backend.as_mut(), defaults, &job);
                        // Until `Done` is sent the handler holds the flag, so it is set only if the
                        // client left.
                        if job.cancel.load(Ordering::Relaxed) {
                            metrics.cancelled(result.as_ref().map_or(0, |r| r.completion_tokens));
                        }
                        let _ = job.events.send(WorkerEvent::Done(Box::new(result)));
                    }
                })
                .context("starting an engine thread")?;
        }
        drop(ready);
        for _ in 0..pool.size() {
            started
                .recv()
                .context("an engine thread ended while loading the model")??;
        }
        Ok(Worker {
            jobs,
            queued,
            batcher: pool.batcher().cloned(),
        })
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
            batcher: None,
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
