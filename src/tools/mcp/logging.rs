//! A server's log level (`log_level:` in its entry), set the way the negotiated protocol wants it:
//! on 2025-era connections with `logging/setLevel` once connected (when the server declares logging);
//! on 2026-07-28 ones, where that request is gone and servers send log messages only to requests
//! that opt in, as the `io.modelcontextprotocol/logLevel` `_meta` key of every request we send (warning
//! when unset, so those servers' warnings still reach the user as 2025-era servers' do). The same
//! level is the lowest one shown as a notice (warning when unset).
#![expect(deprecated, reason = "logging is what 2025-era servers use")]

use crate::config::LogLevel;
use rmcp::model::{LoggingLevel, ProtocolVersion, RequestMetaObject, SetLevelRequestParams};
use rmcp::{Peer, RoleClient};

/// The level notices start at when the entry sets none.
const DEFAULT_SHOWN: LogLevel = LogLevel::Warning;

/// Whether the connection speaks 2026-07-28 or later (no handshake, per-request log opt-in, no
/// `resources/subscribe`).
pub(super) fn modern(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|info| info.protocol_version >= ProtocolVersion::V_2026_07_28)
}

fn wire(level: LogLevel) -> LoggingLevel {
    serde_json::from_value(serde_json::to_value(level).unwrap_or_default())
        .unwrap_or(LoggingLevel::Warning)
}

fn ours(level: LoggingLevel) -> LogLevel {
    serde_json::from_value(serde_json::to_value(level).unwrap_or_default())
        .unwrap_or(LogLevel::Emergency)
}

/// Sends `logging/setLevel` on a 2025-era connection to a server that declares logging; does
/// nothing otherwise. The error is rmcp's, for a notice.
pub(super) async fn set_level(
    peer: &Peer<RoleClient>,
    level: Option<LogLevel>,
) -> Result<(), rmcp::ServiceError> {
    let declared = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.logging.is_some());
    match level {
        Some(level) if declared && !modern(peer) => {
            peer.set_level(SetLevelRequestParams::new(wire(level)))
                .await
        }
        _ => Ok(()),
    }
}

/// The `_meta` that opts a request into log messages at the entry's `level` (warning when unset) and
/// above on a 2026-07-28 connection; `None` on older ones (their level was set once).
pub(super) fn request_meta(
    peer: &Peer<RoleClient>,
    level: Option<LogLevel>,
) -> Option<RequestMetaObject> {
    if !modern(peer) {
        return None;
    }
    let mut meta = RequestMetaObject::new();
    meta.set_log_level(wire(level.unwrap_or(DEFAULT_SHOWN)));
    Some(meta)
}

/// Whether a message at `level` becomes a notice, given the entry's `log_level`.
pub(super) fn shown(level: LoggingLevel, configured: Option<LogLevel>) -> bool {
    ours(level) >= configured.unwrap_or(DEFAULT_SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_both_ways_and_the_default_threshold_is_warning() {
        assert_eq!(ours(wire(LogLevel::Notice)), LogLevel::Notice);
        assert!(shown(LoggingLevel::Warning, None));
        assert!(!shown(LoggingLevel::Info, None));
        assert!(shown(LoggingLevel::Debug, Some(LogLevel::Debug)));
        assert!(!shown(LoggingLevel::Error, Some(LogLevel::Critical)));
    }
}
