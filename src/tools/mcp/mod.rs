//! MCP servers as tools, over rmcp. One concept per file:
//!
//! - `process` — stdio servers as child processes: each in its own process group (wrappers such as uvx
//!   and their grandchildren die with it), a death signal as a backstop, the process-wide list of live
//!   groups that `kill_all_servers` ends at once, and the graceful stop (stdin closed, a grace, the group
//!   killed, the leader reaped);
//! - `environment` — what a stdio server's environment holds: the MCP SDKs' short default list, the
//!   variables its config opts into, its `env`; never our whole environment unasked;
//! - `stderr` — a server's stderr drained (an undrained pipe blocks it) and, when asked, forwarded as
//!   notices, bounded per line and per second;
//! - `client` — our side of a connection: the capabilities we declare (roots, elicitation, sampling),
//!   the answers to the server's requests (`roots/list`, elicitation, sampling) and its log and progress
//!   notifications as notices;
//! - `elicitation` — a request for input answered by the person where one is there (`chat` on a
//!   terminal), else at once as the agent file says;
//! - `progress` — servers' progress reports for a front end's bar, and the end of each request;
//! - `sampling` — a request for a completion checked, capped and queued for the agent's model;
//! - `logging` — a server's `log_level`, by protocol version: `logging/setLevel` or per-request `_meta`;
//! - `oauth` — OAuth 2.1 sign-in for Streamable HTTP servers (`mcp login` / `logout`), tokens kept
//!   0600 in the user's config dir and sent, refreshed, by later connections;
//! - `connection` — one rmcp connection (stdio or Streamable HTTP) with lifecycle probing (modern and
//!   legacy servers) and the tool-list-change watch;
//! - `policy` — what a failed call does: a JSON-RPC error reply is the model's tool error, a closed
//!   transport or a timeout restarts the server once per connection generation, repeated restarts
//!   disable it;
//! - `server` — one configured server: its current connection, calls (timed out and interrupted calls
//!   send `notifications/cancelled`), restarts;
//! - `prompts` — a server's prompts listed for the front ends;
//! - `result` — a CallToolResult as text for a text-only model, blobs saved under unique names;
//! - `resources` — a server's resources as two tools, `{server}-list_resources` and
//!   `{server}-read_resource`, so the model can follow a resource link;
//! - `source` — the tools of every server as one `ToolSource` that follows list changes.

mod client;
mod connection;
mod elicitation;
mod environment;
mod logging;
pub mod oauth;
mod policy;
mod process;
mod progress;
mod prompts;
mod resources;
mod result;
mod sampling;
mod server;
mod source;
mod stderr;

pub use elicitation::{Answer, Person, Question, QuestionKind};
pub use process::kill_all_servers;
pub use progress::{ProgressReport, ProgressSink};
pub use source::McpToolSource;

use crate::config::{ElicitationSpec, McpServerSpec};
use crate::tools::Notices;
use crate::tools::sampling::SampleQueue;
use anyhow::{Context, Result};
use server::McpServer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings shared by every server of a run.
#[derive(Clone)]
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
    /// Where servers' restarts, list failures and (with `forward_stderr`) stderr lines are reported for
    /// the user: pass the tool registry's `notices()`.
    pub notices: Notices,
    /// Forward each stdio server's stderr lines to `notices` (rate-limited); otherwise they are read and
    /// dropped.
    pub forward_stderr: bool,
    /// Directories servers are told they may work in (`roots/list`, as `file://` URIs): the user's
    /// working directory and the agent's `roots:`. Each must exist.
    pub roots: Vec<PathBuf>,
    /// How servers' requests for input are answered when no person is asked (the agent's
    /// `elicitation:`).
    pub elicitation: ElicitationSpec,
    /// The person asked instead (`chat` on a terminal); `None` in runs no one watches.
    pub person: Option<Person>,
    /// Where progress reports go besides the notices (a bar on a terminal).
    pub progress: Option<ProgressSink>,
    /// Where servers' sampling requests go (the registry's `samples()`, served by the agent loop with
    /// its model); `None` where no model answers, and then sampling is not declared.
    pub sampling: Option<SampleQueue>,
}

/// The tokio runtime that drives every MCP connection of a run; tools call into it from their threads.
pub(crate) struct McpRuntime {
    runtime: tokio::runtime::Runtime,
}

impl McpRuntime {
    fn new() -> Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("mcp")
            .build()
            .context("starting the MCP runtime")?;
        Ok(Arc::new(McpRuntime { runtime }))
    }

    /// Runs `future` to completion from a tool's (non-async) thread.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `future` on one of the runtime's worker threads and waits for it. Child processes are spawned
    /// this way: their death signal (see `process`) follows the thread that forked them, and the
    /// workers live as long as the runtime, unlike the short-lived threads that start servers and make
    /// calls.
    fn on_worker<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .block_on(self.runtime.spawn(future))
            .context("an MCP runtime task failed")
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
    let roots = client::roots(&settings.roots)?;
    let started: Vec<(String, bool, Result<Arc<McpServer>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .filter(|(_, spec)| !spec.disabled)
            .map(|(name, spec)| {
                let runtime = runtime.clone();
                let (settings, roots) = (settings.clone(), roots.clone());
                scope.spawn(move || {
                    (
                        name.clone(),
                        spec.required,
                        McpServer::start(name, spec, settings, runtime, roots),
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
