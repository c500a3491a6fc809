//! The tools of every started server as one `ToolSource`: each MCP tool as a `Tool` (arguments checked
//! against its schema before anything is sent), named `{server}-{tool}` when names collide, and the
//! lists of servers that sent `notifications/tools/list_changed` fetched again before the next turn.
//! Servers with resources add their two resource tools (see `resources`).

use super::prompts;
use super::resources::{self, ResourceTool};
use super::server::{Listing, McpServer};
use crate::chat::Message;
use crate::tools::{Cancel, Tool, ToolOutput, ToolSource};
use anyhow::{Context, Result, bail};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput {
        self.call_cancellable(arguments, &Cancel::default())
    }
    /// Arguments that break the schema are an error for the model, not a call.
    fn call_cancellable(&self, arguments: &Map<String, Json>, cancel: &Cancel) -> ToolOutput {
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
        self.server.call(&self.remote_name, arguments, cancel)
    }
}

/// Every started server of a run with its current tool list. The registry asks it for changes before
/// each model turn; a server that sent notifications/tools/list_changed is listed again then.
pub struct McpToolSource {
    servers: Vec<Arc<McpServer>>,
    state: Mutex<ListedTools>,
    /// The resource tools of the servers that offer resources (fixed for the run).
    resource_tools: Vec<Arc<ResourceTool>>,
}

/// Each server's listing and the tools made of them, kept together so a refresh rebuilds only what
/// changed (compiling a schema's validator is the costly part).
struct ListedTools {
    listings: Vec<Listing>,
    tools: Vec<Arc<McpTool>>,
}

impl McpToolSource {
    pub(super) fn new(servers: Vec<Arc<McpServer>>, listings: Vec<Listing>) -> Self {
        let tools = Self::build(&servers, &listings, &[]);
        let resource_tools = servers
            .iter()
            .flat_map(resources::tools)
            .map(Arc::new)
            .collect();
        McpToolSource {
            servers,
            state: Mutex::new(ListedTools { listings, tools }),
            resource_tools,
        }
    }

    /// Every server's prompts, as `prompts::listing` gives them, servers in name order.
    pub fn prompts(&self) -> Vec<Json> {
        self.servers
            .iter()
            .flat_map(|server| prompts::listing(server))
            .collect()
    }

    /// The messages of the prompt `name` (see `prompts::get`) of `server`, or, when no server is
    /// named, of the one server that offers a prompt by that name.
    pub fn prompt_messages(
        &self,
        server: Option<&str>,
        name: &str,
        arguments: &Map<String, Json>,
    ) -> Result<Vec<Message>> {
        let found = match server {
            Some(wanted) => self
                .servers
                .iter()
                .find(|s| s.name() == wanted)
                .with_context(|| {
                    let names: Vec<&str> = self.servers.iter().map(|s| s.name()).collect();
                    format!(
                        "no MCP server named {wanted:?} is running; the running ones: {}",
                        names.join(", ")
                    )
                })?,
            None => {
                let offering: Vec<&Arc<McpServer>> = self
                    .servers
                    .iter()
                    .filter(|s| prompts::listing(s).iter().any(|p| p["name"] == name))
                    .collect();
                match offering[..] {
                    [one] => one,
                    [] => bail!("no MCP server offers a prompt named {name:?}"),
                    _ => {
                        let names: Vec<String> = offering
                            .iter()
                            .map(|s| format!("{}/{name}", s.name()))
                            .collect();
                        bail!(
                            "several MCP servers offer a prompt named {name:?}: name one of {}",
                            names.join(", ")
                        )
                    }
                }
            }
        };
        prompts::get(found, name, arguments)
    }

    /// The listed tools and the resource tools, as the registry takes them. A resource tool whose
    /// name a server's own tool already has is left out (with a notice), so the registry never sees
    /// two tools of one name.
    fn all(&self, tools: &[Arc<McpTool>]) -> Vec<Arc<dyn Tool>> {
        let mut all: Vec<Arc<dyn Tool>> =
            tools.iter().map(|t| t.clone() as Arc<dyn Tool>).collect();
        for tool in &self.resource_tools {
            if tools.iter().any(|t| t.name == tool.name()) {
                tool.server().notice(format!(
                    "the server has its own tool named {:?}, so its resources get no such tool",
                    tool.name()
                ));
            } else {
                all.push(tool.clone());
            }
        }
        all
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
                let name = if server.prefixed() || counts[remote_name] > 1 {
                    format!("{}-{remote_name}", server.name())
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

impl ToolSource for McpToolSource {
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.all(&self.state.lock().unwrap_or_else(|e| e.into_inner()).tools)
    }

    fn changed_tools(&self) -> Option<Vec<Arc<dyn Tool>>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (server, listing) in self.servers.iter().zip(state.listings.iter_mut()) {
            if server.take_tools_changed() {
                match server.list_tools() {
                    Ok(fresh) => {
                        changed |= *listing != fresh;
                        *listing = fresh;
                    }
                    Err(e) => server.notice(format!(
                        "MCP server {:?} changed its tools but listing them failed ({e:#}); keeping the old list",
                        server.name()
                    )),
                }
            }
        }
        if !changed {
            return None;
        }
        state.tools = Self::build(&self.servers, &state.listings, &state.tools);
        Some(self.all(&state.tools))
    }
}
