//! One rmcp connection to a server, stdio or Streamable HTTP: started with lifecycle probing (2026-07-28
//! servers have no initialize handshake, legacy ones do), watching for tool-list changes, and stopped
//! by closing it and then (stdio) stopping the process. Also how a request is sent on it (`tools/call`,
//! `resources/read`, …) with a timeout that cancels it.

use super::McpRuntime;
use super::McpSettings;
use super::client::{Answering, Client, Roots};
use super::environment::server_environment;
use super::logging;
use super::oauth;
use super::policy::{self, CallError};
use super::process::{Launch, ServerProcess, resolve_command};
use super::progress::{ProgressReport, ProgressSink, token_text};
use super::sampling::{self, Sampler};
use super::stderr;
use crate::config::{LogLevel, McpServerSpec, expand_env};
use crate::tools::Cancel;
use anyhow::{Context, Result, bail};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, ProtocolVersion, ServerResult, SubscriptionFilter,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{Peer, RoleClient, ServiceError};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Everything needed to (re)connect to one configured server.
pub(super) struct Endpoint {
    pub name: String,
    pub spec: McpServerSpec,
    pub settings: McpSettings,
    pub runtime: Arc<McpRuntime>,
    /// Set when the server says its tool list changed.
    pub tools_changed: Arc<AtomicBool>,
    /// What `roots/list` answers (see `client::roots`).
    pub roots: Roots,
}

/// A live connection and, for a stdio server, its process.
pub(super) struct Connection {
    service: RunningService<RoleClient, Client>,
    process: Option<ServerProcess>,
}

impl Connection {
    pub fn peer(&self) -> Peer<RoleClient> {
        self.service.peer().clone()
    }

    /// Our handler on this connection (it answers the server's requests for input).
    pub fn client(&self) -> Client {
        self.service.service().clone()
    }

    /// Closes the connection (a stdio server's stdin with it), then stops the process.
    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(3), self.service.cancel()).await;
        if let Some(process) = self.process {
            process.stop().await;
        }
    }
}

/// Rounds of input a call may ask for before it fails (rmcp's own default).
const MAX_INPUT_ROUNDS: usize = rmcp::model::DEFAULT_MRTR_MAX_ROUNDS;

/// Modern (2026-07-28) servers are probed first; legacy ones get the initialize handshake.
fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

fn lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Endpoint {
    /// Starts (stdio) or reaches (HTTP) the server and completes the handshake.
    pub fn connect(&self) -> Result<Connection> {
        match (
            self.spec.kind.as_deref(),
            &self.spec.url,
            &self.spec.command,
        ) {
            (Some("sse"), _, _) => bail!(
                "the legacy HTTP+SSE transport (type: sse) is not supported; most servers also serve \
                 Streamable HTTP (often at /mcp): use type: http with that URL"
            ),
            (Some("stdio") | None, None, Some(command)) => self.connect_stdio(command),
            (Some("http" | "streamable-http" | "streamableHttp") | None, Some(url), None) => {
                self.connect_http(&expand_env(url, lookup)?)
            }
            (Some(kind), _, _)
                if !matches!(
                    kind,
                    "stdio" | "http" | "streamable-http" | "streamableHttp"
                ) =>
            {
                bail!("unknown server type {kind:?}; use stdio (command/args) or http (url)")
            }
            _ => bail!(
                "give either command (a stdio server) or url (a Streamable HTTP server), not both or neither"
            ),
        }
    }

    fn client(&self) -> Client {
        Client::new(
            &self.name,
            self.tools_changed.clone(),
            self.roots.clone(),
            self.settings.notices.clone(),
            Answering {
                elicitation: Arc::new(self.settings.elicitation.clone()),
                person: self.settings.person.clone(),
                sampler: self.sampler(),
                progress: self.settings.progress.clone(),
            },
            self.spec.log_level,
        )
    }

    /// Where this server's sampling requests go: the agent's queue, unless there is no model to answer
    /// or its entry says `sampling: false`.
    fn sampler(&self) -> Option<Arc<Sampler>> {
        let queue = self.settings.sampling.clone()?;
        if self.spec.sampling == Some(false) {
            return None;
        }
        Some(Arc::new(Sampler {
            queue,
            max_tokens: self
                .spec
                .sampling_max_tokens
                .unwrap_or(sampling::DEFAULT_MAX_TOKENS),
            wait: policy::call_timeout(
                &self.spec,
                "sampling/createMessage",
                self.settings.call_timeout,
            ),
        }))
    }

    /// Waits for the handshake, bounded by the connect timeout.
    async fn handshake<T, E, A>(&self, transport: T) -> Result<RunningService<RoleClient, Client>>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let timeout = self.settings.connect_timeout;
        let service = tokio::time::timeout(
            timeout,
            self.client().serve_with_lifecycle(transport, lifecycle()),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer to the MCP handshake within {:.0} s",
                timeout.as_secs_f64()
            )
        })?
        .context("the MCP handshake failed")?;
        let level = tokio::time::timeout(
            timeout,
            logging::set_level(service.peer(), self.spec.log_level),
        )
        .await;
        if !matches!(level, Ok(Ok(()))) {
            let why = match level {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer".to_string(),
            };
            self.settings.notices.push(format!(
                "[{}] logging/setLevel failed ({why}); the server logs at its own level",
                self.name
            ));
        }
        Ok(service)
    }

    /// On 2026-07-28 connections servers announce tool changes only to a `subscriptions/listen`
    /// stream; open one in the background. Legacy servers refuse it and notify the handler instead.
    fn follow_tool_changes(&self, service: &RunningService<RoleClient, Client>) {
        let peer = service.peer().clone();
        let flag = self.tools_changed.clone();
        tokio::spawn(async move {
            let filter = SubscriptionFilter::builder().tools_list_changed().build();
            let Ok(mut subscription) = peer.listen(filter).await else {
                return;
            };
            while let Ok(Some(_)) = subscription.next().await {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }

    fn connect_http(&self, url: &str) -> Result<Connection> {
        let mut headers = HashMap::new();
        for (key, value) in &self.spec.headers {
            let text = match value {
                Json::String(s) => expand_env(s, lookup)?,
                other => other.to_string(),
            };
            let name = reqwest::header::HeaderName::from_bytes(key.as_bytes())
                .with_context(|| format!("header name {key:?} is not valid"))?;
            let value = reqwest::header::HeaderValue::from_str(&text)
                .with_context(|| format!("the value of header {key:?} is not valid"))?;
            headers.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
            .custom_headers(headers)
            .max_json_response_size(self.settings.max_message_bytes)
            .max_sse_event_size(self.settings.max_message_bytes);
        let static_auth = self
            .spec
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"));
        self.runtime.block_on(async {
            let signed_in = if static_auth {
                None
            } else {
                oauth::authorized_client(url)
                    .await
                    .with_context(|| format!("using the saved OAuth sign-in for {url}"))?
            };
            let connected = match signed_in {
                Some(client) => {
                    let transport = StreamableHttpClientTransport::with_client(client, config);
                    self.handshake(transport).await
                }
                None => {
                    let transport = StreamableHttpClientTransport::from_config(config);
                    self.handshake(transport).await
                }
            };
            let service = connected.map_err(|e| {
                let text = format!("{e:#}");
                let refused = ["401", "403", "Auth required", "authorization required"]
                    .iter()
                    .any(|code| text.contains(code));
                let hint = if refused {
                    format!(
                        " (the server refused the credentials: if it signs in with OAuth, run                          `qwen3-agent mcp login {} AGENT.yaml`; else check the headers, e.g.                          Authorization: Bearer ${{TOKEN}}, and that the variable is set)",
                        self.name
                    )
                } else {
                    String::new()
                };
                e.context(format!("connecting to {url}{hint}"))
            })?;
            self.follow_tool_changes(&service);
            Ok(Connection {
                service,
                process: None,
            })
        })
    }

    fn connect_stdio(&self, command: &str) -> Result<Connection> {
        let launch = Launch {
            program: resolve_command(&expand_env(command, lookup)?),
            args: self
                .spec
                .args
                .iter()
                .map(|arg| expand_env(arg, lookup))
                .collect::<Result<_>>()?,
            environment: server_environment(
                std::env::vars_os(),
                &self.spec.inherit_env,
                &self.spec.env,
                lookup,
            )?,
            cwd: self.spec.cwd.clone(),
        };
        let (name, notices, forward) = (
            self.name.clone(),
            self.settings.notices.clone(),
            self.settings.forward_stderr,
        );
        let (process, stdout, stdin) = self.runtime.on_worker(async move {
            let mut process = ServerProcess::spawn(launch)?;
            let (stdout, stdin, stderr) = process
                .take_pipes()
                .context("the server's stdin/stdout could not be opened")?;
            tokio::spawn(stderr::drain(name, stderr, notices, forward));
            anyhow::Ok((process, stdout, stdin))
        })??;
        self.runtime.block_on(async {
            let transport = AsyncRwTransport::new_client(stdout, stdin)
                .with_max_line_length(self.settings.max_message_bytes);
            match self.handshake(transport).await {
                Ok(service) => {
                    self.follow_tool_changes(&service);
                    Ok(Connection {
                        service,
                        process: Some(process),
                    })
                }
                Err(e) => {
                    process.stop().await;
                    Err(e)
                }
            }
        })
    }
}

/// How one request is sent (see [`send`]).
pub(super) struct Sending<'a> {
    pub timeout: Duration,
    /// Set when the user interrupts the run.
    pub cancel: &'a Cancel,
    /// The entry's `log_level`, asked for per request on 2026-07-28 connections (see `logging`).
    pub log_level: Option<LogLevel>,
    /// The server's name and the sink its progress goes to, told when the request ends.
    pub progress: Option<(&'a str, &'a ProgressSink)>,
}

/// Sends `tools/call` (see [`send`]). A 2026-07-28 server that needs input first answers with an
/// input_required result: `client` answers its requests and the call is sent again with the answers
/// and the server's state, at most `MAX_INPUT_ROUNDS` times.
pub(super) async fn call_tool(
    peer: &Peer<RoleClient>,
    client: &Client,
    tool: &str,
    arguments: &Map<String, Json>,
    sending: &Sending<'_>,
) -> Result<CallToolResult, CallError> {
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments.clone());
    for _ in 0..MAX_INPUT_ROUNDS {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params.clone()));
        match send(peer, request, sending).await? {
            ServerResult::CallToolResult(result) => return Ok(result),
            // A result with nothing but (optional) metadata, as rmcp's own call_tool accepts it.
            ServerResult::EmptyResult(_) => return Ok(CallToolResult::default()),
            ServerResult::InputRequiredResult(asked) => {
                let answers = client
                    .answer_all(asked.input_requests.unwrap_or_default())
                    .await
                    .map_err(|e| CallError::Service(ServiceError::McpError(e)))?;
                params.input_responses = Some(answers);
                params.request_state = asked.request_state;
            }
            _ => return Err(CallError::Service(ServiceError::UnexpectedResponse)),
        }
    }
    Err(CallError::Service(
        ServiceError::InputRequiredRoundsExceeded {
            max_rounds: MAX_INPUT_ROUNDS,
        },
    ))
}

/// Sends a request and waits at most its timeout, or until its `cancel` (the user interrupted the
/// run). Either way the server is told with `notifications/cancelled` for the request (written before
/// this returns), so it can stop working on it; a transport too wedged to take even that is given up
/// on after a few more seconds. rmcp puts a progress token on every request, so servers may report
/// progress (see `client`).
pub(super) async fn send(
    peer: &Peer<RoleClient>,
    request: ClientRequest,
    sending: &Sending<'_>,
) -> Result<ServerResult, CallError> {
    let (timeout, cancel) = (sending.timeout, sending.cancel);
    if cancel.is_cancelled() {
        return Err(CallError::Interrupted { told: false });
    }
    let grace = Duration::from_secs(3);
    let mut options = PeerRequestOptions::with_timeout(timeout);
    options.meta = logging::request_meta(peer, sending.log_level);
    let handle = tokio::time::timeout(grace, peer.send_request_with_option(request, options))
        .await
        .map_err(|_| CallError::Unanswered(timeout))?
        .map_err(CallError::Service)?;
    let id = handle.id.clone();
    let token = token_text(&handle.progress_token);
    let reply = tokio::select! {
        biased;
        () = cancel.cancelled() => {
            let notice = CancelledNotificationParam::new(
                Some(id),
                Some("interrupted by the user".to_string()),
            );
            let told = tokio::time::timeout(grace, peer.notify_cancelled(notice)).await;
            Err(CallError::Interrupted { told: matches!(told, Ok(Ok(()))) })
        }
        reply = tokio::time::timeout(timeout.saturating_add(grace), handle.await_response()) => {
            reply.map_err(|_| CallError::Unanswered(timeout)).and_then(|r| r.map_err(CallError::Service))
        }
    };
    if let Some((server, sink)) = sending.progress {
        sink(ProgressReport::Done {
            server: server.to_string(),
            token,
        });
    }
    reply
}
