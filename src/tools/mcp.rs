//! MCP servers as tools, over rmcp: stdio servers started in their own process group (so wrappers such as
//! uvx and their grandchildren die with them) and Streamable HTTP servers, connected with rmcp's lifecycle
//! probing (modern and legacy servers), calls with a timeout that cancels the request, results mapped for
//! a text-only model, a dead server restarted once per call and disabled when it keeps dying, and tool
//! lists fetched again after a server says they changed.

use super::{Tool, ToolOutput, ToolSource};
use crate::config::{McpServerSpec, expand_env};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rmcp::model::{CallToolRequestParams, ProtocolVersion, SubscriptionFilter};
use rmcp::service::{
    ClientLifecycleMode, ClientServiceExt, MaybeSendFuture, NotificationContext, RunningService,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Restarts after which a server is disabled for the rest of the run.
const MAX_RESTARTS: usize = 3;

/// Process groups of every server still running, so `kill_all_servers` can end them even when a
/// connection is still referenced by an abandoned call.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kills every MCP server process group still alive; called once when the program ends.
pub fn kill_all_servers() {
    for group in LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        kill_group(group);
    }
}

fn kill_group(group: i32) {
    #[cfg(unix)]
    // SAFETY: kill(2) on a process group we created; one that is already gone is harmless.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

/// Settings shared by every server of a run.
#[derive(Debug, Clone)]
pub struct McpSettings {
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    /// Characters of one result kept for the model; the rest is cut with a note.
    pub max_output_chars: usize,
    /// Largest single message read from a server (a stdio line or an HTTP body). Results up to this size
    /// arrive whole and are then cut to `max_output_chars`; larger ones fail the call.
    pub max_message_bytes: usize,
    /// Where images and binary resources from results are written.
    pub output_dir: PathBuf,
}

/// The tokio runtime that drives every MCP connection of a run; tools call into it from their threads.
pub struct McpRuntime {
    runtime: tokio::runtime::Runtime,
}

impl McpRuntime {
    pub fn new() -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("mcp")
            .build()
            .context("starting the MCP runtime")?;
        Ok(Arc::new(McpRuntime { runtime }))
    }
}

/// One configured server and its live connection.
pub struct McpServer {
    pub name: String,
    spec: McpServerSpec,
    settings: McpSettings,
    runtime: Arc<McpRuntime>,
    connection: Mutex<Option<Connection>>,
    restarts: AtomicUsize,
    /// Set when the server sends notifications/tools/list_changed.
    tools_changed: Arc<AtomicBool>,
}

struct Connection {
    service: RunningService<RoleClient, ChangeWatcher>,
    process_group: Option<i32>,
    /// Kept so the server's exit is reaped (no zombie) when the connection stops.
    child: Option<tokio::process::Child>,
}

/// Our side of a connection: notes that the server's tool list changed, so it is fetched again before
/// the model's next turn.
#[derive(Clone)]
struct ChangeWatcher {
    tools_changed: Arc<AtomicBool>,
}

impl ClientHandler for ChangeWatcher {
    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.tools_changed.store(true, Ordering::Relaxed);
        std::future::ready(())
    }
}

/// Modern (2026-07-28) servers are probed first; legacy ones get the initialize handshake.
fn lifecycle() -> ClientLifecycleMode {
    ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    }
}

impl McpServer {
    /// Starts the server and connects; fails with a message naming the server.
    pub fn start(
        name: &str,
        spec: &McpServerSpec,
        settings: McpSettings,
        runtime: Arc<McpRuntime>,
    ) -> Result<Arc<Self>> {
        let server = Arc::new(McpServer {
            name: name.to_string(),
            spec: spec.clone(),
            settings,
            runtime,
            connection: Mutex::new(None),
            restarts: AtomicUsize::new(0),
            tools_changed: Arc::new(AtomicBool::new(false)),
        });
        let connection = server
            .connect()
            .with_context(|| format!("MCP server {name:?} did not start"))?;
        *server.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(connection);
        Ok(server)
    }

    fn connect(&self) -> Result<Connection> {
        let lookup = |name: &str| std::env::var(name).ok();
        match (
            self.spec.kind.as_deref(),
            &self.spec.url,
            &self.spec.command,
        ) {
            (Some("sse"), _, _) => bail!(
                "the legacy HTTP+SSE transport (type: sse) is not supported; most servers also serve \
                 Streamable HTTP (often at /mcp): use type: http with that URL"
            ),
            (Some("stdio") | None, None, Some(_)) => self.connect_stdio(),
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

    fn watcher(&self) -> ChangeWatcher {
        ChangeWatcher {
            tools_changed: self.tools_changed.clone(),
        }
    }

    /// Waits for the handshake, bounded by the connect timeout.
    async fn handshake<T, E, A>(
        &self,
        transport: T,
    ) -> Result<RunningService<RoleClient, ChangeWatcher>>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let timeout = self.settings.connect_timeout;
        tokio::time::timeout(
            timeout,
            self.watcher().serve_with_lifecycle(transport, lifecycle()),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no answer to the MCP handshake within {:.0} s",
                timeout.as_secs_f64()
            )
        })?
        .context("the MCP handshake failed")
    }

    /// On 2026-07-28 connections servers announce tool changes only to a `subscriptions/listen`
    /// stream; open one in the background. Legacy servers refuse it and notify the handler instead.
    fn follow_tool_changes(&self, service: &RunningService<RoleClient, ChangeWatcher>) {
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
        let lookup = |name: &str| std::env::var(name).ok();
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
        self.runtime.runtime.block_on(async {
            let transport = StreamableHttpClientTransport::from_config(config);
            let service = self.handshake(transport).await.map_err(|e| {
                let refused = ["401", "403"].iter().any(|code| format!("{e:#}").contains(code));
                let hint = if refused {
                    " (the server refused the credentials: check the headers, e.g. Authorization: Bearer ${TOKEN}, and that the variable is set)"
                } else {
                    ""
                };
                e.context(format!("connecting to {url}{hint}"))
            })?;
            self.follow_tool_changes(&service);
            Ok(Connection {
                service,
                process_group: None,
                child: None,
            })
        })
    }

    fn connect_stdio(&self) -> Result<Connection> {
        let lookup = |name: &str| std::env::var(name).ok();
        let command = expand_env(self.spec.command.as_deref().context("no command")?, lookup)?;
        let mut cmd = tokio::process::Command::new(resolve_command(&command));
        for arg in &self.spec.args {
            cmd.arg(expand_env(arg, lookup)?);
        }
        for (key, value) in &self.spec.env {
            let text = match value {
                Json::String(s) => expand_env(s, lookup)?,
                other => other.to_string(),
            };
            cmd.env(key, text);
        }
        if let Some(dir) = &self.spec.cwd {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        cmd.process_group(0);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let name = self.name.clone();
        self.runtime.runtime.block_on(async move {
            let mut child = cmd.spawn().with_context(|| {
                format!("cannot run {command:?} (is it installed and on PATH?)")
            })?;
            let process_group = child.id().map(|pid| pid as i32);
            if let Some(group) = process_group {
                LIVE_GROUPS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(group);
            }
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(drain_stderr(name, stderr));
            }
            let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
                bail!("the server's stdin/stdout could not be opened");
            };
            let transport = AsyncRwTransport::new_client(stdout, stdin)
                .with_max_line_length(self.settings.max_message_bytes);
            let service = match self.handshake(transport).await {
                Ok(service) => service,
                Err(e) => {
                    if let Some(group) = process_group {
                        kill_group(group);
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
                    return Err(e);
                }
            };
            self.follow_tool_changes(&service);
            Ok(Connection {
                service,
                process_group,
                child: Some(child),
            })
        })
    }

    /// Every tool the server offers (all pages), schemas untouched.
    pub fn list_tools(&self) -> Result<Vec<(String, String, Json)>> {
        let guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let connection = guard.as_ref().context("the server is not running")?;
        let timeout = self.settings.connect_timeout;
        let tools = self
            .runtime
            .runtime
            .block_on(async {
                tokio::time::timeout(timeout, connection.service.list_all_tools()).await
            })
            .map_err(|_| anyhow::anyhow!("tools/list timed out"))?
            .context("tools/list failed")?;
        Ok(tools
            .into_iter()
            .map(|t| {
                let schema = Json::Object((*t.input_schema).clone());
                (
                    t.name.to_string(),
                    t.description.map(|d| d.to_string()).unwrap_or_default(),
                    schema,
                )
            })
            .collect())
    }

    /// Calls a tool; transport failures restart the server for the next call and are reported.
    pub fn call(&self, tool: &str, arguments: &Map<String, Json>) -> ToolOutput {
        if self.restarts.load(Ordering::Relaxed) > MAX_RESTARTS {
            return ToolOutput::error(format!(
                "Error: the MCP server {} kept crashing and was disabled for this run.",
                self.name
            ));
        }
        let peer = match self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(c) => c.service.peer().clone(),
            None => {
                return self.restart(format!(
                    "Error: the MCP server {} was not running.",
                    self.name
                ));
            }
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments.clone());
        let timeout = self
            .spec
            .tool_timeouts
            .get(tool)
            .or(self.spec.timeout.as_ref())
            .map(|seconds| Duration::from_secs_f64(*seconds))
            .unwrap_or(self.settings.call_timeout);
        let outcome = self
            .runtime
            .runtime
            .block_on(async { tokio::time::timeout(timeout, peer.call_tool(params)).await });
        match outcome {
            // A stdio server that let a call time out is likely wedged: the next call would hang too.
            Err(_) => self.restart(format!(
                "Error: {tool} on MCP server {} did not answer within {:.0} s; the call was cancelled.",
                self.name,
                timeout.as_secs_f64()
            )),
            Ok(Err(e)) => self.restart(format!("Error: calling {tool} on MCP server {} failed: {e}.", self.name)),
            Ok(Ok(result)) => match serde_json::to_value(&result) {
                Ok(value) => map_result(&value, &self.settings, &self.name),
                Err(e) => ToolOutput::error(format!("Error: unreadable result from {tool}: {e}")),
            },
        }
    }

    /// Reports `message` and restarts the server so the next call finds it running.
    fn restart(&self, message: String) -> ToolOutput {
        let count = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let mut guard = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = guard.take() {
            self.stop(old);
        }
        if count > MAX_RESTARTS {
            return ToolOutput::error(format!(
                "{message} The server kept crashing and was disabled for this run."
            ));
        }
        match self.connect() {
            Ok(connection) => {
                *guard = Some(connection);
                ToolOutput::error(format!(
                    "{message} The server was restarted; the call was not retried."
                ))
            }
            Err(e) => ToolOutput::error(format!("{message} Restarting it failed: {e:#}.")),
        }
    }

    /// Kills the server's process group (grandchildren included), then closes the connection.
    fn stop(&self, connection: Connection) {
        let Connection {
            service,
            process_group,
            child,
        } = connection;
        if let Some(group) = process_group {
            kill_group(group);
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|g| *g != group);
        }
        self.runtime.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(3), service.cancel()).await;
            if let Some(mut child) = child {
                let _ = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
            }
        });
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        if let Some(connection) = self
            .connection
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            self.stop(connection);
        }
    }
}

async fn drain_stderr(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if std::env::var_os("QWEN3_AGENT_MCP_STDERR").is_some() {
            eprintln!("[{server}] {line}");
        }
    }
}

/// A CallToolResult (wire JSON) as text for the model: text blocks joined, structuredContent when there
/// is no text, embedded text resources included, images and blobs saved to files and referenced, isError
/// kept, long output cut with a note.
fn map_result(result: &Json, settings: &McpSettings, server: &str) -> ToolOutput {
    let mut parts = Vec::new();
    let mut files = Vec::new();
    for (i, block) in result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        match block["type"].as_str() {
            Some("text") => parts.push(block["text"].as_str().unwrap_or_default().to_string()),
            Some("image") | Some("audio") => {
                let mime = block["mimeType"]
                    .as_str()
                    .unwrap_or("application/octet-stream");
                match save_blob(
                    settings,
                    server,
                    i,
                    mime,
                    block["data"].as_str().unwrap_or_default(),
                ) {
                    Ok(path) => {
                        parts.push(format!(
                            "[{} saved to {}]",
                            block["type"].as_str().unwrap_or("file"),
                            path
                        ));
                        files.push(path);
                    }
                    Err(e) => parts.push(format!("[a {mime} result could not be saved: {e}]")),
                }
            }
            Some("resource") => {
                let resource = &block["resource"];
                if let Some(text) = resource["text"].as_str() {
                    parts.push(text.to_string());
                } else if let Some(blob) = resource["blob"].as_str() {
                    let mime = resource["mimeType"]
                        .as_str()
                        .unwrap_or("application/octet-stream");
                    if let Ok(path) = save_blob(settings, server, i, mime, blob) {
                        parts.push(format!(
                            "[resource {} saved to {path}]",
                            resource["uri"].as_str().unwrap_or("")
                        ));
                        files.push(path);
                    }
                }
            }
            Some("resource_link") => parts.push(format!(
                "[resource link: {}]",
                block["uri"].as_str().unwrap_or("")
            )),
            _ => {}
        }
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent").filter(|v| !v.is_null())
    {
        parts.push(serde_json::to_string_pretty(structured).unwrap_or_default());
    }
    let mut text = parts.join("\n");
    let total = text.chars().count();
    if total > settings.max_output_chars {
        text = text.chars().take(settings.max_output_chars).collect();
        text.push_str(&format!(
            "\n[output cut: the tool returned {total} characters; only the first {} are shown]",
            settings.max_output_chars
        ));
    }
    ToolOutput {
        text,
        is_error: result["isError"].as_bool().unwrap_or(false),
        files,
    }
}

fn save_blob(
    settings: &McpSettings,
    server: &str,
    index: usize,
    mime: &str,
    data: &str,
) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data)?;
    let extension = mime
        .split('/')
        .nth(1)
        .unwrap_or("bin")
        .split(['+', ';'])
        .next()
        .unwrap_or("bin");
    std::fs::create_dir_all(&settings.output_dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let path = settings
        .output_dir
        .join(format!("{server}-{stamp}-{index}.{extension}"));
    std::fs::write(&path, bytes)?;
    Ok(path.display().to_string())
}

/// One MCP tool as the model sees it.
pub struct McpTool {
    server: Arc<McpServer>,
    name: String,
    remote_name: String,
    description: String,
    parameters: Json,
    /// The input schema compiled; None when the server's schema is not valid JSON Schema (then the server
    /// judges the arguments itself).
    validator: Option<jsonschema::Validator>,
}

impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> &Json {
        &self.parameters
    }
    /// Arguments that break the schema are an error for the model, not a call.
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        if let Some(validator) = &self.validator {
            let instance = Json::Object(arguments.clone());
            let problems: Vec<String> = validator
                .iter_errors(&instance)
                .take(5)
                .map(|e| format!("{} (at '{}')", e, e.instance_path()))
                .collect();
            if !problems.is_empty() {
                return ToolOutput::error(format!(
                    "Error: the arguments for {} do not match its schema: {}. Nothing was run; call it again \
                     with arguments that match the schema.",
                    self.name,
                    problems.join("; ")
                ));
            }
        }
        self.server.call(&self.remote_name, arguments)
    }
}

/// A server's tools as listed: name, description, input schema.
type Listing = Vec<(String, String, Json)>;

/// Every started server of a run with its current tool list. The registry asks it for changes before
/// each model turn; a server that sent notifications/tools/list_changed is listed again then.
pub struct McpToolSource {
    servers: Vec<Arc<McpServer>>,
    state: Mutex<ListedTools>,
}

/// Each server's listing and the tools made of them, kept together so a refresh rebuilds only what
/// changed (compiling a schema's validator is the costly part).
struct ListedTools {
    listings: Vec<Listing>,
    tools: Vec<Arc<McpTool>>,
}

impl McpToolSource {
    fn new(servers: Vec<Arc<McpServer>>, listings: Vec<Listing>) -> Self {
        let tools = Self::build(&servers, &listings, &[]);
        McpToolSource {
            servers,
            state: Mutex::new(ListedTools { listings, tools }),
        }
    }

    /// Tools named `{server}-{tool}` when names collide across servers or the server asks for a prefix;
    /// a tool of `previous` with the same server, names, description and schema is reused as is.
    fn build(
        servers: &[Arc<McpServer>],
        listings: &[Listing],
        previous: &[Arc<McpTool>],
    ) -> Vec<Arc<McpTool>> {
        let mut counts = HashMap::new();
        for listing in listings {
            for (name, _, _) in listing {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
        }
        let mut tools = Vec::new();
        for (server, listing) in servers.iter().zip(listings) {
            for (remote_name, description, parameters) in listing {
                let name = if server.spec.prefix || counts[remote_name] > 1 {
                    format!("{}-{remote_name}", server.name)
                } else {
                    remote_name.clone()
                };
                let unchanged = previous.iter().find(|t| {
                    Arc::ptr_eq(&t.server, server)
                        && t.name == name
                        && &t.remote_name == remote_name
                        && &t.description == description
                        && &t.parameters == parameters
                });
                if let Some(tool) = unchanged {
                    tools.push(tool.clone());
                    continue;
                }
                tools.push(Arc::new(McpTool {
                    server: server.clone(),
                    name,
                    remote_name: remote_name.clone(),
                    description: description.clone(),
                    validator: jsonschema::validator_for(parameters).ok(),
                    parameters: parameters.clone(),
                }));
            }
        }
        tools
    }
}

fn as_dyn(tools: &[Arc<McpTool>]) -> Vec<Arc<dyn Tool>> {
    tools.iter().map(|t| t.clone() as Arc<dyn Tool>).collect()
}

impl ToolSource for McpToolSource {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        as_dyn(&self.state.lock().unwrap_or_else(|e| e.into_inner()).tools)
    }

    fn changed_tools(&self) -> Option<Vec<Arc<dyn Tool>>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (server, listing) in self.servers.iter().zip(state.listings.iter_mut()) {
            if server.tools_changed.swap(false, Ordering::Relaxed) {
                match server.list_tools() {
                    Ok(fresh) => {
                        changed |= *listing != fresh;
                        *listing = fresh;
                    }
                    Err(e) => eprintln!(
                        "note: MCP server {:?} changed its tools but listing them failed ({e:#}); keeping the old list",
                        server.name
                    ),
                }
            }
        }
        if !changed {
            return None;
        }
        state.tools = Self::build(&self.servers, &state.listings, &state.tools);
        Some(as_dyn(&state.tools))
    }
}

/// What starting an agent's servers gave.
pub struct StartedServers {
    /// The servers that started, as one tool source for the registry.
    pub source: Arc<McpToolSource>,
    /// One message per server that failed to start (and is not `required`).
    pub failures: Vec<String>,
}

/// Starts every enabled server concurrently and lists their tools.
pub fn start_servers(
    servers: &BTreeMap<String, McpServerSpec>,
    settings: &McpSettings,
) -> Result<StartedServers> {
    let runtime = McpRuntime::new()?;
    let started: Vec<(String, bool, Result<Arc<McpServer>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .filter(|(_, spec)| !spec.disabled)
            .map(|(name, spec)| {
                let runtime = runtime.clone();
                let settings = settings.clone();
                scope.spawn(move || {
                    (
                        name.clone(),
                        spec.required,
                        McpServer::start(name, spec, settings, runtime),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("server start threads do not panic"))
            .collect()
    });
    let mut running = Vec::new();
    let mut listings = Vec::new();
    let mut failures = Vec::new();
    for (name, required, server) in started {
        let listing = server.and_then(|s| Ok((s.list_tools()?, s)));
        match listing {
            Ok((listing, server)) => {
                running.push(server);
                listings.push(listing);
            }
            Err(e) if required => return Err(e.context(format!("MCP server {name:?} is required"))),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let source = Arc::new(McpToolSource::new(running, listings));
    Ok(StartedServers { source, failures })
}

/// A bare command name found on PATH runs as is; otherwise one of our own servers (`mcp-time`, ...)
/// installed beside this executable is used, so agents can name them without a PATH setup.
fn resolve_command(command: &str) -> std::path::PathBuf {
    let bare = !command.contains(std::path::MAIN_SEPARATOR) && !command.contains('/');
    let on_path = || {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
    };
    let sibling = || {
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(command)))
            .filter(|path| path.is_file())
    };
    if bare
        && !on_path()
        && let Some(sibling) = sibling()
    {
        return sibling;
    }
    command.into()
}
