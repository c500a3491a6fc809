//! A server's resources as two tools the model can call, as Qwen-Agent names them:
//! `{server}-list_resources` (resources and resource templates: uri, name, title, mimeType,
//! description) and `{server}-read_resource {uri}` (text inline, binary contents saved like blobs in a
//! tool result, see `result`). Without them a `resource_link` in a result is a URI the model cannot open.
//! Only servers that declare the resources capability get them. A resource the model read is
//! subscribed to where the server offers it, so its changes are reported.

use super::result;
use super::server::McpServer;
use crate::tools::{Tool, ToolOutput};
use rmcp::model::{
    ClientRequest, ListResourceTemplatesRequest, ListResourcesRequest, ReadResourceRequest,
    ReadResourceRequestParams, ServerResult,
};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

/// The fields of a resource (or template) the model is shown; icons, sizes and metadata are left out.
const SHOWN_FIELDS: [&str; 6] = [
    "uri",
    "uriTemplate",
    "name",
    "title",
    "mimeType",
    "description",
];

enum Kind {
    List,
    Read,
}

/// One of the two resource tools of a server.
pub(super) struct ResourceTool {
    server: Arc<McpServer>,
    kind: Kind,
    name: String,
    description: String,
    parameters: Json,
}

/// The resource tools of `server`: both, or none when it lists no resources and no templates (many
/// servers declare the capability, SDKs do it for them, and have none: the model is not shown tools
/// that can give nothing).
pub(super) fn tools(server: &Arc<McpServer>) -> Vec<ResourceTool> {
    let any = |listed| listing(server, listed).is_ok_and(|entries| !entries.is_empty());
    if !server.offers_resources() || !(any(Listed::Resources) || any(Listed::Templates)) {
        return Vec::new();
    }
    let name = server.name();
    vec![
        ResourceTool {
            server: server.clone(),
            kind: Kind::List,
            name: format!("{name}-list_resources"),
            description: format!(
                "Lists the resources (documents, files, data) the MCP server {name} offers, and the URI \
                 templates it can fill in: uri (or uriTemplate), name, mimeType, description. Read one \
                 with {name}-read_resource."
            ),
            parameters: json!({"type": "object", "properties": {}}),
        },
        ResourceTool {
            server: server.clone(),
            kind: Kind::Read,
            name: format!("{name}-read_resource"),
            description: format!(
                "Reads a resource of the MCP server {name} by its URI: one from {name}-list_resources, a \
                 filled-in template, or a resource link in a tool result. Text comes back inline; \
                 binary contents are saved to a file whose path is returned."
            ),
            parameters: json!({
                "type": "object",
                "properties": {"uri": {"type": "string", "description": "The resource's URI."}},
                "required": ["uri"]
            }),
        },
    ]
}

impl ResourceTool {
    pub fn server(&self) -> &Arc<McpServer> {
        &self.server
    }

    fn list(&self) -> ToolOutput {
        let resources = match listing(&self.server, Listed::Resources) {
            Ok(listed) => listed,
            Err(output) => return output,
        };
        // Templates are optional: a server without them answers with an error, which leaves the list
        // of resources as it is.
        let templates = listing(&self.server, Listed::Templates).unwrap_or_default();
        let listing = json!({"resources": resources, "resourceTemplates": templates});
        let text = serde_json::to_string_pretty(&listing).unwrap_or_default();
        self.output(&json!({"content": [{"type": "text", "text": text}]}))
    }

    fn read(&self, uri: &str) -> ToolOutput {
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(
            ReadResourceRequestParams::new(uri),
        ));
        let reply = match self.server.request("resources/read", request) {
            Ok(ServerResult::ReadResourceResult(reply)) => reply,
            Ok(_) => {
                return ToolOutput::error(
                    "Error: the MCP server answered resources/read with a reply of another kind.",
                );
            }
            Err(output) => return output,
        };
        self.server.follow(uri);
        let reply = serde_json::to_value(reply).unwrap_or_default();
        let blocks: Vec<Json> = reply["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|contents| json!({"type": "resource", "resource": contents}))
            .collect();
        if blocks.is_empty() {
            return ToolOutput::ok(format!("The resource {uri} is empty."));
        }
        self.output(&json!({"content": blocks}))
    }

    /// A result shaped like a tool's, mapped (and cut, blobs saved) the same way.
    fn output(&self, reply: &Json) -> ToolOutput {
        result::to_output(reply, self.server.settings(), self.server.name())
    }
}

#[derive(Clone, Copy)]
enum Listed {
    Resources,
    Templates,
}

/// Every resource (or template) the server lists, each cut to `SHOWN_FIELDS`.
fn listing(server: &McpServer, listed: Listed) -> Result<Vec<Json>, ToolOutput> {
    let entries = match listed {
        Listed::Resources => server.list_pages("resources/list", "resources", |params| {
            ClientRequest::ListResourcesRequest(ListResourcesRequest::with_param(params))
        }),
        Listed::Templates => {
            server.list_pages("resources/templates/list", "resourceTemplates", |params| {
                ClientRequest::ListResourceTemplatesRequest(
                    ListResourceTemplatesRequest::with_param(params),
                )
            })
        }
    }?;
    Ok(entries.iter().map(shown).collect())
}

/// The fields of a listed entry the model is shown.
fn shown(entry: &Json) -> Json {
    let kept: Map<String, Json> = SHOWN_FIELDS
        .iter()
        .filter_map(|key| Some((key.to_string(), entry.get(*key)?.clone())))
        .collect();
    Json::Object(kept)
}

impl Tool for ResourceTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn parameters(&self) -> &Json {
        &self.parameters
    }
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        match self.kind {
            Kind::List => self.list(),
            Kind::Read => match arguments.get("uri").and_then(Json::as_str) {
                Some(uri) if !uri.is_empty() => self.read(uri),
                _ => ToolOutput::error(format!(
                    "Error: {} needs a uri (a string), e.g. {{\"uri\": \"file:///notes.txt\"}}; call \
                     {}-list_resources to see what there is.",
                    self.name,
                    self.server.name()
                )),
            },
        }
    }
}
