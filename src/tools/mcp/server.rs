//! One configured server: its current connection and generation, calls on it, and restarts as the
//! policy decides (see `policy`). Restarting holds the server's lock, so calls that arrive meanwhile
//! wait and then use the new connection.

use super::client::{Client, Roots};
use super::connection::{Connection, Endpoint, Sending, call_tool, send};
use super::policy::CallError;
use super::policy::{self, Health, Verdict};
use super::result;
use super::{McpRuntime, McpSettings};
use crate::config::McpServerSpec;
use crate::tools::{Cancel, ToolOutput};
use anyhow::{Context, Result};
use rmcp::model::{
    ClientRequest, PaginatedRequestParams, ServerCapabilities, ServerResult, SubscribeRequestParams,
};
use rmcp::{Peer, RoleClient};
use serde_json::{Map, Value as Json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Pages of a listing fetched at most.
const MAX_PAGES: usize = 20;

/// A server's tools as listed: name, description, input schema (untouched).
pub(super) type Listing = Vec<(String, String, Json)>;

pub(super) struct McpServer {
    endpoint: Endpoint,
    state: Mutex<State>,
}

struct State {
    connection: Option<Connection>,
    health: Health,
    /// The resources subscribed to on the current connection.
    subscribed: HashSet<String>,
}

impl McpServer {
    /// Starts the server and connects; fails with a message naming the server.
    pub fn start(
        name: &str,
        spec: &McpServerSpec,
        settings: McpSettings,
        runtime: Arc<McpRuntime>,
        roots: Roots,
    ) -> Result<Arc<Self>> {
        let endpoint = Endpoint {
            name: name.to_string(),
            spec: spec.clone(),
            settings,
            runtime,
            tools_changed: Arc::new(AtomicBool::new(false)),
            roots,
        };
        let connection = endpoint
            .connect()
            .with_context(|| format!("MCP server {name:?} did not start"))?;
        Ok(Arc::new(McpServer {
            endpoint,
            state: Mutex::new(State {
                connection: Some(connection),
                health: Health::default(),
                subscribed: HashSet::new(),
            }),
        }))
    }

    pub fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// Whether its tools are always named `{server}-{tool}`.
    pub fn prefixed(&self) -> bool {
        self.endpoint.spec.prefix
    }

    /// Whether the server said its tools changed since the last call of this (which resets it).
    pub fn take_tools_changed(&self) -> bool {
        self.endpoint.tools_changed.swap(false, Ordering::Relaxed)
    }

    /// Whether the server (as connected now) offers resources, so it gets the resource tools.
    pub fn offers_resources(&self) -> bool {
        self.capabilities()
            .is_some_and(|capabilities| capabilities.resources.is_some())
    }

    /// Whether the server (as connected now) offers prompts.
    pub fn offers_prompts(&self) -> bool {
        self.capabilities()
            .is_some_and(|capabilities| capabilities.prompts.is_some())
    }

    /// Asks for `uri`'s changes (`resources/subscribe`, once per connection) where a 2025-era server
    /// offers subscriptions, so a change the model should know of is reported (see `client`); a
    /// refusal is a notice. (2026-07-28 servers take resource subscriptions on a
    /// `subscriptions/listen` stream instead: not followed yet.)
    #[expect(
        deprecated,
        reason = "resources/subscribe is what 2025-era servers take"
    )]
    pub fn follow(&self, uri: &str) {
        let offered = {
            let state = self.lock();
            let peer = state.connection.as_ref().map(Connection::peer);
            peer.filter(|peer| !super::logging::modern(peer))
                .and_then(|peer| peer.peer_info()?.capabilities.resources.clone()?.subscribe)
                .unwrap_or(false)
        };
        if !offered || !self.lock().subscribed.insert(uri.to_string()) {
            return;
        }
        let request = ClientRequest::SubscribeRequest(rmcp::model::SubscribeRequest::new(
            SubscribeRequestParams::new(uri),
        ));
        if let Err(output) = self.request("resources/subscribe", request) {
            self.notice(format!(
                "[{}] subscribing to {uri} failed, its changes will not be reported: {}",
                self.name(),
                output.text
            ));
        }
    }

    fn capabilities(&self) -> Option<ServerCapabilities> {
        let state = self.lock();
        let info = state.connection.as_ref()?.peer().peer_info()?;
        Some(info.capabilities.clone())
    }

    pub fn settings(&self) -> &McpSettings {
        &self.endpoint.settings
    }

    /// Reports `text` to the user (not the model).
    pub fn notice(&self, text: String) {
        self.endpoint.settings.notices.push(text);
    }

    /// The server's name and where its progress reports go, for requests on it.
    fn progress(&self) -> Option<(&str, &super::progress::ProgressSink)> {
        let sink = self.endpoint.settings.progress.as_ref()?;
        Some((self.name(), sink))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every tool the server offers (all pages), schemas untouched.
    pub fn list_tools(&self) -> Result<Listing> {
        let state = self.lock();
        let connection = state
            .connection
            .as_ref()
            .context("the server is not running")?;
        let peer = connection.peer();
        let timeout = self.endpoint.settings.connect_timeout;
        let tools = self
            .endpoint
            .runtime
            .block_on(async { tokio::time::timeout(timeout, peer.list_all_tools()).await })
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

    /// Calls a tool until it answers, times out or `cancel` (both send `notifications/cancelled`). Every
    /// failure is a result for the model; the policy decides whether the server is restarted for the
    /// next call.
    pub fn call(&self, tool: &str, arguments: &Map<String, Json>, cancel: &Cancel) -> ToolOutput {
        let timeout = policy::call_timeout(
            &self.endpoint.spec,
            tool,
            self.endpoint.settings.call_timeout,
        );
        let reply = self.exchange(tool, |peer, client| async move {
            let sending = Sending {
                timeout,
                cancel,
                log_level: self.endpoint.spec.log_level,
                progress: self.progress(),
            };
            call_tool(&peer, &client, tool, arguments, &sending).await
        });
        match reply {
            Ok(reply) => match serde_json::to_value(&reply) {
                Ok(value) => result::to_output(&value, &self.endpoint.settings, self.name()),
                Err(e) => ToolOutput::error(format!("Error: unreadable result from {tool}: {e}")),
            },
            Err(output) => output,
        }
    }

    /// Sends another request than `tools/call` (`label`, its method, names it in errors and may have
    /// its own `toolTimeouts` entry), with the same failure policy as a call.
    pub fn request(&self, label: &str, request: ClientRequest) -> Result<ServerResult, ToolOutput> {
        let settings = &self.endpoint.settings;
        let timeout = policy::call_timeout(&self.endpoint.spec, label, settings.call_timeout);
        match self.exchange(label, |peer, _| async move {
            let sending = Sending {
                timeout,
                cancel: &Cancel::default(),
                log_level: self.endpoint.spec.log_level,
                progress: self.progress(),
            };
            send(&peer, request, &sending).await
        })? {
            ServerResult::InputRequiredResult(_) => Err(ToolOutput::error(format!(
                "Error: the MCP server {} answered {label} with a request for input (the 2026-07-28 \
                 multi round-trip form), which this client does not answer yet.",
                self.name()
            ))),
            reply => Ok(reply),
        }
    }

    /// The entries under `key` of every page of a listing (`method`, e.g. `resources/list`; `request`
    /// builds one page's request), at most `MAX_PAGES` pages: a server that keeps returning cursors is
    /// cut off there.
    pub fn list_pages(
        &self,
        method: &str,
        key: &str,
        request: impl Fn(PaginatedRequestParams) -> ClientRequest,
    ) -> Result<Vec<Json>, ToolOutput> {
        let mut entries = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let params = PaginatedRequestParams::default().with_cursor(cursor);
            let page =
                serde_json::to_value(self.request(method, request(params))?).unwrap_or_default();
            entries.extend(page[key].as_array().into_iter().flatten().cloned());
            cursor = page["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(entries)
    }

    /// Runs one exchange on the current connection; a failure is the model's error text, after the
    /// server was restarted or disabled as the policy says.
    fn exchange<T, F>(
        &self,
        label: &str,
        run: impl FnOnce(Peer<RoleClient>, Client) -> F,
    ) -> Result<T, ToolOutput>
    where
        F: Future<Output = Result<T, CallError>>,
    {
        let (peer, client, generation) = {
            let state = self.lock();
            if state.health.disabled() {
                return Err(ToolOutput::error(format!(
                    "Error: the MCP server {} kept failing and was disabled for this run.",
                    self.name()
                )));
            }
            let generation = state.health.generation();
            match &state.connection {
                Some(connection) => (connection.peer(), connection.client(), generation),
                None => {
                    drop(state);
                    return Err(self.restart(
                        generation,
                        format!("Error: the MCP server {} was not running.", self.name()),
                    ));
                }
            }
        };
        match self.endpoint.runtime.block_on(run(peer, client)) {
            Ok(reply) => Ok(reply),
            Err(error) => Err(match policy::judge(self.name(), label, error) {
                Verdict::ToolError(text) => ToolOutput::error(text),
                Verdict::Restart(text) => self.restart(generation, text),
            }),
        }
    }

    /// After a call on connection `generation` failed with `message`: restarts the server unless another
    /// call already did, or disables it after too many restarts. The call is never retried (it may have
    /// had effects).
    fn restart(&self, generation: u64, message: String) -> ToolOutput {
        let mut state = self.lock();
        if !state.health.owns_restart(generation) {
            return ToolOutput::error(format!(
                "{message} The server was restarted for another call that failed at the same time; \
                 this call was not retried."
            ));
        }
        if let Some(old) = state.connection.take() {
            self.endpoint.runtime.block_on(old.stop());
        }
        state.subscribed.clear();
        if !state.health.begin_restart() {
            self.notice(format!(
                "MCP server {:?} kept failing and was disabled for this run",
                self.name()
            ));
            return ToolOutput::error(format!(
                "{message} The server kept failing and was disabled for this run."
            ));
        }
        match self.endpoint.connect() {
            Ok(connection) => {
                state.connection = Some(connection);
                self.notice(format!(
                    "MCP server {:?} was restarted after a failed call",
                    self.name()
                ));
                ToolOutput::error(format!(
                    "{message} The server was restarted; the call was not retried."
                ))
            }
            Err(e) => {
                self.notice(format!(
                    "MCP server {:?} failed and could not be restarted: {e:#}",
                    self.name()
                ));
                ToolOutput::error(format!("{message} Restarting it failed: {e:#}."))
            }
        }
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = state.connection.take() {
            self.endpoint.runtime.block_on(connection.stop());
        }
    }
}
