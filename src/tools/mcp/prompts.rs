//! A server's prompts (message templates a person may start a conversation from), listed for the front
//! ends: `qwen3-agent tools AGENT --prompts` prints them, and `chat` can offer them. Getting one
//! (`prompts/get`) is not here yet.

use super::server::McpServer;
use rmcp::model::{ClientRequest, ListPromptsRequest};
use serde_json::{Map, Value as Json};

/// The fields of a prompt shown; icons and metadata are left out.
const SHOWN_FIELDS: [&str; 4] = ["name", "title", "description", "arguments"];

/// The server's prompts, each `{server, name, title, description, arguments}`; `[]` when it offers
/// none, `[{server, error}]` when listing them failed.
pub(super) fn listing(server: &McpServer) -> Vec<Json> {
    if !server.offers_prompts() {
        return Vec::new();
    }
    let listed = server.list_pages("prompts/list", "prompts", |params| {
        ClientRequest::ListPromptsRequest(ListPromptsRequest::with_param(params))
    });
    let name = Json::String(server.name().to_string());
    match listed {
        Ok(prompts) => prompts
            .iter()
            .map(|prompt| {
                let mut shown = Map::from_iter([("server".to_string(), name.clone())]);
                for key in SHOWN_FIELDS {
                    if let Some(value) = prompt.get(key) {
                        shown.insert(key.to_string(), value.clone());
                    }
                }
                Json::Object(shown)
            })
            .collect(),
        Err(output) => vec![serde_json::json!({"server": name, "error": output.text})],
    }
}
