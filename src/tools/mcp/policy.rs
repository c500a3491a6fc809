//! What a call that got no result does to its server.
//!
//! A server that answered — even with a JSON-RPC error (invalid params, a tool that threw) — is
//! working: the error is the model's tool result and the server is left alone. Only a connection that
//! is gone (the process exited, the transport closed) or a call that timed out (the server may be
//! wedged; the next call would hang too) restarts it. Restarts are counted per connection generation,
//! so the calls that were in flight when a server died restart it once between them, not once each;
//! after `MAX_RESTARTS` the server is disabled for the run.

use crate::config::McpServerSpec;
use rmcp::ServiceError;
use std::time::Duration;

/// Restarts after which a server is disabled for the rest of the run.
pub(super) const MAX_RESTARTS: usize = 3;

/// Why a call has no result.
#[derive(Debug)]
pub(super) enum CallError {
    /// rmcp's error: the server's JSON-RPC error reply, a closed transport, rmcp's timeout, ...
    Service(ServiceError),
    /// Not even the cancellation could be sent within a grace after the timeout.
    Unanswered(Duration),
    /// The user interrupted the run; `told` when `notifications/cancelled` reached the transport.
    Interrupted { told: bool },
}

/// What to do about a failed call; each carries the text for the model.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// The server answered: report the error, keep the server.
    ToolError(String),
    /// The connection is gone or wedged: restart the server (once per generation).
    Restart(String),
}

/// Judges a failed call of `tool` on `server`.
pub(super) fn judge(server: &str, tool: &str, error: CallError) -> Verdict {
    let timed_out = |timeout: Duration| {
        Verdict::Restart(format!(
            "Error: {tool} on MCP server {server} did not answer within {} s; the call was cancelled.",
            seconds(timeout)
        ))
    };
    match error {
        CallError::Unanswered(timeout) | CallError::Service(ServiceError::Timeout { timeout }) => {
            timed_out(timeout)
        }
        CallError::Interrupted { told } => Verdict::ToolError(format!(
            "Error: {tool} on MCP server {server} was interrupted by the user before it answered{}.",
            if told {
                "; the server was told to stop (notifications/cancelled)"
            } else {
                ""
            }
        )),
        CallError::Service(ServiceError::McpError(reply)) => {
            let data = match &reply.data {
                Some(data) => format!(" (data: {})", cut(&data.to_string(), 500)),
                None => String::new(),
            };
            Verdict::ToolError(format!(
                "Error: {tool} on MCP server {server} failed with JSON-RPC error {}: {}{data}",
                reply.code.0,
                cut(&reply.message, 2000)
            ))
        }
        CallError::Service(
            error @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)),
        ) => Verdict::Restart(format!(
            "Error: calling {tool} on MCP server {server} failed: {error}."
        )),
        CallError::Service(other) => Verdict::ToolError(format!(
            "Error: calling {tool} on MCP server {server} failed: {other}."
        )),
    }
}

/// The timeout for `tool`: its own (`toolTimeouts`), else the server's (`timeout`), else the run's.
/// A value that is not a usable number of seconds leaves the next one in charge.
pub(super) fn call_timeout(spec: &McpServerSpec, tool: &str, default: Duration) -> Duration {
    [spec.tool_timeouts.get(tool), spec.timeout.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|seconds| {
            Duration::try_from_secs_f64(*seconds)
                .ok()
                .filter(|d| !d.is_zero())
        })
        .unwrap_or(default)
}

/// A server's restart count and connection generation.
#[derive(Debug, Default)]
pub(super) struct Health {
    generation: u64,
    restarts: usize,
}

impl Health {
    /// The generation of the current connection; a call remembers it when it starts.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Disabled for the rest of the run.
    pub fn disabled(&self) -> bool {
        self.restarts > MAX_RESTARTS
    }

    /// Whether a call that failed on connection `generation` is the one to restart the server: no other
    /// call restarted it since.
    pub fn owns_restart(&self, generation: u64) -> bool {
        self.generation == generation
    }

    /// Counts a restart and starts a new generation; false when this restart is one too many and the
    /// server is disabled instead.
    pub fn begin_restart(&mut self) -> bool {
        self.generation += 1;
        self.restarts += 1;
        !self.disabled()
    }
}

fn seconds(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{seconds:.0}")
    } else {
        format!("{seconds:.1}")
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::ErrorData;
    use rmcp::model::ErrorCode;

    #[test]
    fn a_json_rpc_error_reply_is_a_tool_error_with_its_code_and_message() {
        let reply = ErrorData::new(
            ErrorCode::INVALID_PARAMS,
            "bad zone",
            Some(serde_json::json!({"field": "timezone"})),
        );
        let verdict = judge(
            "time",
            "get",
            CallError::Service(ServiceError::McpError(reply)),
        );
        assert_eq!(
            verdict,
            Verdict::ToolError(
                "Error: get on MCP server time failed with JSON-RPC error -32602: bad zone \
                 (data: {\"field\":\"timezone\"})"
                    .into()
            )
        );
    }

    #[test]
    fn a_closed_transport_or_a_timeout_restarts() {
        for error in [
            CallError::Service(ServiceError::TransportClosed),
            CallError::Service(ServiceError::Timeout {
                timeout: Duration::from_millis(1500),
            }),
            CallError::Unanswered(Duration::from_secs(2)),
        ] {
            assert!(matches!(judge("s", "t", error), Verdict::Restart(_)));
        }
        let Verdict::Restart(text) = judge(
            "s",
            "t",
            CallError::Service(ServiceError::Timeout {
                timeout: Duration::from_millis(1500),
            }),
        ) else {
            unreachable!()
        };
        assert!(text.contains("within 1.5 s"), "{text}");
    }

    #[test]
    fn other_protocol_surprises_keep_the_server() {
        for error in [
            ServiceError::UnexpectedResponse,
            ServiceError::Cancelled { reason: None },
        ] {
            assert!(matches!(
                judge("s", "t", CallError::Service(error)),
                Verdict::ToolError(_)
            ));
        }
    }

    #[test]
    fn an_interrupted_call_keeps_the_server_and_says_whether_it_was_told() {
        let told = judge("s", "t", CallError::Interrupted { told: true });
        assert_eq!(
            told,
            Verdict::ToolError(
                "Error: t on MCP server s was interrupted by the user before it answered; the server \
                 was told to stop (notifications/cancelled)."
                    .into()
            )
        );
        let Verdict::ToolError(text) = judge("s", "t", CallError::Interrupted { told: false })
        else {
            panic!("an interrupt never restarts the server")
        };
        assert!(!text.contains("told"), "{text}");
    }

    #[test]
    fn only_the_first_failure_of_a_generation_restarts_and_too_many_disable() {
        let mut health = Health::default();
        let seen = health.generation();
        assert!(health.owns_restart(seen));
        assert!(health.begin_restart());
        assert!(
            !health.owns_restart(seen),
            "a second call that failed on the old connection does not restart again"
        );
        assert!(health.owns_restart(health.generation()));
        assert!(health.begin_restart() && health.begin_restart());
        assert!(!health.disabled());
        assert!(!health.begin_restart(), "the fourth restart disables");
        assert!(health.disabled());
    }

    #[test]
    fn timeouts_prefer_the_tool_then_the_server_and_skip_unusable_values() {
        let default = Duration::from_secs(60);
        let mut spec = McpServerSpec::default();
        assert_eq!(call_timeout(&spec, "t", default), default);
        spec.timeout = Some(30.0);
        assert_eq!(call_timeout(&spec, "t", default), Duration::from_secs(30));
        spec.tool_timeouts.insert("t".into(), 1.5);
        assert_eq!(
            call_timeout(&spec, "t", default),
            Duration::from_millis(1500)
        );
        for bad in [f64::NAN, -1.0, 0.0, f64::INFINITY, 1e300] {
            spec.tool_timeouts.insert("t".into(), bad);
            assert_eq!(
                call_timeout(&spec, "t", default),
                Duration::from_secs(30),
                "{bad}"
            );
        }
    }
}
