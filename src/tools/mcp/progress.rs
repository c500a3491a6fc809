//! Servers' progress reports for a front end that draws them (a bar on a terminal), besides the
//! notices every report also becomes. rmcp puts a progress token on every request; a report names the
//! request by it, and the end of the request is reported too, so a bar never outlives its call.

use rmcp::model::{NumberOrString, ProgressNotificationParam, ProgressToken};
use std::sync::Arc;

/// One report about a request in flight.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressReport {
    /// The server says how far the request `token` of `server` is.
    Step {
        server: String,
        token: String,
        progress: f64,
        /// The total `progress` goes to, when the server knows it.
        total: Option<f64>,
        /// What the server says it is doing (hostile text: show it escaped).
        message: Option<String>,
    },
    /// The request `token` of `server` ended (answered, failed, timed out or interrupted).
    Done { server: String, token: String },
}

/// Where progress reports go (e.g. `chat`'s bars); called on the MCP runtime's threads, so it must
/// not block.
pub type ProgressSink = Arc<dyn Fn(ProgressReport) + Send + Sync>;

/// The token as text, the same for a number and its string form's request.
pub(super) fn token_text(token: &ProgressToken) -> String {
    match &token.0 {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.to_string(),
    }
}

/// A server's notification as a report.
pub(super) fn step(server: &str, params: &ProgressNotificationParam) -> ProgressReport {
    ProgressReport::Step {
        server: server.to_string(),
        token: token_text(&params.progress_token),
        progress: params.progress,
        total: params.total,
        message: params.message.clone(),
    }
}
