//! `serve`: the OpenAI-compatible HTTP server, one more consumer of the library's backend API. A model
//! (or an agent file's `model` and `generate`) is served on `/v1/chat/completions` and
//! `/v1/completions` (plain and SSE), `/v1/models`, `/health` and `/metrics`. One engine answers
//! requests one at a time from a bounded queue (`worker`); a client that goes away cancels its
//! request.

mod error;
mod metrics;
mod request;
mod response;
mod worker;

pub use error::ApiError;
pub use request::{ChatRequest, CompletionRequest};

use crate::agent::assemble::AssembleOptions;
use crate::agent::backend_pool::BackendPool;
use crate::config::{self, BackendKind, ResolvedAgent};
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::Metrics;
use response::Kind;
use serde_json::json;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use worker::{Job, Work, Worker, WorkerEvent};

/// How the server listens and whom it answers.
pub struct ServeOptions {
    pub host: IpAddr,
    pub port: u16,
    /// Requests must carry `Authorization: Bearer <key>`; required for a non-loopback bind.
    pub api_key: Option<String>,
    /// Requests that may wait behind those being answered; more get 503.
    pub queue: usize,
    /// Requests answered at once (None: `backend_pool::DEFAULT_PARALLEL`; a local CPU model batches
    /// them, a GPU model or a script answers one at a time whatever this says).
    pub parallel: Option<usize>,
    /// The model id clients must name (vLLM's `--served-model-name`); None: `served_name`.
    pub model_name: Option<String>,
}

/// The largest request body: long conversations with tool results fit; beyond it the answer is 413.
const MAX_BODY_BYTES: usize = 64 << 20;

/// What `serve` serves for its argument: an agent file (`.yaml`/`.yml`: its `model` block and
/// `generate` defaults), else a model directory or hub id on the local engine.
pub fn served_agent(argument: &Path) -> Result<ResolvedAgent> {
    let is_yaml = argument
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml");
    if is_yaml {
        return config::load_agent(argument);
    }
    let name = served_name_of(argument);
    let agent = serde_json::from_value(json!({"name": name, "model": {"path": argument}}))
        .context("describing the served model")?;
    Ok(ResolvedAgent {
        agent,
        source: argument.to_path_buf(),
    })
}

/// The model id clients name: a local model's directory name or hub id, else the agent's name.
pub fn served_name(definition: &ResolvedAgent) -> String {
    match (
        &definition.agent.model.backend,
        &definition.agent.model.path,
    ) {
        (BackendKind::Local, Some(path)) => served_name_of(path),
        _ => definition.agent.name.clone(),
    }
}

fn served_name_of(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !path.exists() && crate::model::hub::is_hub_id(&text) {
        return text.into_owned();
    }
    path.file_name()
        .map_or(text.clone(), |n| n.to_string_lossy())
        .into_owned()
}

/// What every handler shares.
struct Served {
    worker: Worker,
    model: String,
    api_key: Option<String>,
    metrics: Arc<Metrics>,
}

/// Loads the backend, binds, reports the address to `on_listening`, and serves until the process
/// ends. A non-loopback bind without an API key is refused: it would open the model to the network.
pub fn serve(
    definition: ResolvedAgent,
    options: ServeOptions,
    assemble: AssembleOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<()> {
    if !options.host.is_loopback() && options.api_key.is_none() {
        bail!(
            "binding to {} would let anyone on the network use the model without a key: pass \
             --api-key-env VAR (with the key in VAR), or bind to 127.0.0.1",
            options.host
        );
    }
    let model = options
        .model_name
        .unwrap_or_else(|| served_name(&definition));
    let metrics = Arc::new(Metrics::default());
    let pool = BackendPool::new(definition, assemble, options.parallel)?;
    let worker = Worker::start(pool, options.queue, metrics.clone())?;
    let served = Arc::new(Served {
        worker,
        model,
        api_key: options.api_key,
        metrics,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async move {
        let address = SocketAddr::new(options.host, options.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("binding {address}: is another server using the port? pass --port")
            })?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, router(served))
            .await
            .context("serving HTTP")
    })
}

fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(served.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(served)
}

/// With a key, every route but `/health` needs `Authorization: Bearer <key>`.
async fn authorize(State(served): State<Arc<Served>>, request: Request, next: Next) -> Response {
    let Some(key) = &served.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if request.uri().path() == "/health" || given.is_some_and(|g| same_secret(g, key)) {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API key: send the header `Authorization: Bearer <key>` with the key the \
         server was started with",
    )
    .with_code("invalid_api_key")
    .into_response()
}

/// Compares without stopping at the first difference, so timing does not reveal the key's prefix.
fn same_secret(given: &str, key: &str) -> bool {
    given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An unknown route, or a known one with the wrong method (both 404, as OpenAI answers).
async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}: this server has POST /v1/chat/completions, POST /v1/completions, GET \
             /v1/models, GET /health and GET /metrics",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn models(State(served): State<Arc<Served>>) -> Response {
    axum::Json(json!({"object": "list", "data": [{
        "id": served.model, "object": "model", "created": 0, "owned_by": "qwen3-agent"}]}))
    .into_response()
}

async fn metrics(State(served): State<Arc<Served>>) -> Response {
    let mut text = served
        .metrics
        .render(served.worker.queued.load(Ordering::Relaxed));
    if let Some(batcher) = &served.worker.batcher {
        text.push_str(&metrics::render_batch(batcher.stats()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Sets the cancel flag when dropped: a handler or stream that ends early (the client went away)
/// stops its request's generation, or keeps it from starting.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn chat_completions(
    State(served): State<Arc<Served>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(served, body, Kind::Chat).await
}

async fn completions(
    State(served): State<Arc<Served>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(served, body, Kind::Text).await
}

/// Either endpoint: the body read, parsed and queued, then the answer plain or streamed.
async fn answer(served: Arc<Served>, body: Result<Bytes, BytesRejection>, kind: Kind) -> Response {
    let started = Instant::now();
    let body = body.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            format!(
                "the request body could not be read ({}); bodies may be at most {} MiB",
                rejection.body_text(),
                MAX_BODY_BYTES >> 20
            ),
        )
    });
    match body.and_then(|body| start(&served, &body, kind)) {
        Ok(queued) if queued.stream => stream(served, queued, started).await,
        Ok(queued) => complete(served, queued, started).await,
        Err(error) => {
            served
                .metrics
                .request(error.status.as_u16(), started.elapsed());
            error.into_response()
        }
    }
}

type Events = tokio::sync::mpsc::UnboundedReceiver<WorkerEvent>;

/// A request in the engine's queue, as its handler holds it.
struct Queued {
    kind: Kind,
    stream: bool,
    include_usage: bool,
    /// Whether the client asked for logprobs (then the answer has them, even none).
    logprobs: bool,
    events: Events,
    cancel: CancelOnDrop,
}

/// Parses and queues a request.
fn start(served: &Served, body: &[u8], kind: Kind) -> Result<Queued, ApiError> {
    let work = match kind {
        Kind::Chat => Work::Chat(ChatRequest::parse(body)?),
        Kind::Text => Work::Text(CompletionRequest::parse(body)?),
    };
    let settings = match &work {
        Work::Chat(request) => &request.settings,
        Work::Text(request) => &request.settings,
    };
    if let Some(model) = &settings.model
        && *model != served.model
    {
        return Err(ApiError {
            param: Some("model".into()),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the model `{model}` does not exist: this server serves `{}`",
                    served.model
                ),
            )
            .with_code("model_not_found")
        });
    }
    let (sender, events) = tokio::sync::mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let (stream, include_usage) = (settings.stream, settings.include_usage);
    let logprobs = settings.logprobs.is_some();
    served.worker.submit(Job {
        work,
        events: sender,
        cancel: cancel.clone(),
    })?;
    Ok(Queued {
        kind,
        stream,
        include_usage,
        logprobs,
        events,
        cancel: CancelOnDrop(cancel),
    })
}

/// The end of a request: its metrics, its answer or error.
fn record(
    served: &Served,
    outcome: &Result<crate::backend::BackendResponse, ApiError>,
    started: Instant,
) {
    match outcome {
        Ok(response) => {
            let cached = response.timings.as_ref().map_or(0, |t| t.reused_tokens);
            served
                .metrics
                .tokens(response.prompt_tokens, cached, response.completion_tokens);
            served.metrics.request(200, started.elapsed());
        }
        Err(error) => served
            .metrics
            .request(error.status.as_u16(), started.elapsed()),
    }
}

async fn complete(served: Arc<Served>, queued: Queued, started: Instant) -> Response {
    let Queued {
        mut events,
        kind,
        logprobs,
        ..
    } = queued;
    let mut tokens = Vec::new();
    let outcome = loop {
        match events.recv().await {
            Some(WorkerEvent::Parse(_)) => continue,
            Some(WorkerEvent::Logprobs(token)) => tokens.push(token),
            Some(WorkerEvent::Done(outcome)) => break *outcome,
            None => break Err(engine_gone()),
        }
    };
    record(&served, &outcome, started);
    let logprobs = logprobs.then_some(&tokens[..]);
    match outcome {
        Ok(response) => axum::Json(match kind {
            Kind::Chat => response::completion(
                &response::new_id("chatcmpl-"),
                &served.model,
                &response,
                logprobs,
            ),
            Kind::Text => response::text_completion(
                &response::new_id("cmpl-"),
                &served.model,
                &response,
                logprobs,
            ),
        })
        .into_response(),
        Err(error) => error.into_response(),
    }
}

fn engine_gone() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the engine thread stopped while answering; restart the server",
    )
}

/// The streamed answer: server-sent events of chunks, then `[DONE]`. The response starts with the
/// engine's first event, so a request refused before generating (a prompt beyond the context) is
/// still an HTTP error; a failure while generating is sent as an `{"error"}` event. Dropping the
/// stream (the client left) cancels the request.
async fn stream(served: Arc<Served>, queued: Queued, started: Instant) -> Response {
    let Queued {
        mut events,
        cancel,
        include_usage,
        kind,
        ..
    } = queued;
    struct State {
        served: Arc<Served>,
        events: Events,
        chunks: response::Chunks,
        include_usage: bool,
        started: Instant,
        pending: std::collections::VecDeque<String>,
        done: bool,
        _cancel: CancelOnDrop,
    }
    let first = match events.recv().await {
        Some(WorkerEvent::Done(outcome)) if outcome.is_err() => {
            record(&served, &outcome, started);
            return outcome
                .err()
                .map(IntoResponse::into_response)
                .unwrap_or_default();
        }
        first => first,
    };
    let prefix = match kind {
        Kind::Chat => "chatcmpl-",
        Kind::Text => "cmpl-",
    };
    let chunks = response::Chunks::new(&response::new_id(prefix), &served.model, kind);
    let role = chunks.role().map(|r| r.to_string());
    let mut state = State {
        served,
        events,
        chunks,
        include_usage,
        started,
        pending: role.into_iter().collect(),
        done: false,
        _cancel: cancel,
    };
    state.take(first);
    impl State {
        /// Turns the engine's next event (None: the engine is gone) into pending chunks.
        fn take(&mut self, event: Option<WorkerEvent>) {
            match event {
                Some(WorkerEvent::Parse(event)) => {
                    let chunks = self.chunks.event(&event);
                    self.pending.extend(chunks.iter().map(|c| c.to_string()));
                }
                Some(WorkerEvent::Logprobs(token)) => self.chunks.logprob(token),
                Some(WorkerEvent::Done(outcome)) => {
                    record(&self.served, &outcome, self.started);
                    match *outcome {
                        Ok(response) => {
                            self.pending
                                .push_back(self.chunks.finish(&response).to_string());
                            if self.include_usage {
                                self.pending
                                    .push_back(self.chunks.usage(&response).to_string());
                            }
                        }
                        Err(error) => self.pending.push_back(error.body().to_string()),
                    }
                    self.pending.push_back("[DONE]".into());
                    self.done = true;
                }
                None => {
                    self.pending.push_back(engine_gone().body().to_string());
                    self.done = true;
                }
            }
        }
    }
    let body = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(data) = state.pending.pop_front() {
                return Some((Ok::<_, Infallible>(Event::default().data(data)), state));
            }
            if state.done {
                return None;
            }
            let next = state.events.recv().await;
            state.take(next);
        }
    });
    Sse::new(body).into_response()
}
