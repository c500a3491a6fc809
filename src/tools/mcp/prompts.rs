//! A server's prompts (message templates a person may start a conversation from): listed for the front
//! ends (`qwen3-agent tools AGENT --prompts`, `chat`'s `/prompts`) and got (`prompts/get`) as chat
//! messages (`chat`'s `/prompt`, a task's `prompt_from`). Arguments are checked against the listing
//! first, so a missing required one is named with its description instead of whatever the server says.

use super::result;
use super::server::McpServer;
use crate::chat::Message;
use anyhow::{Result, anyhow, bail};
use rmcp::model::{
    ClientRequest, GetPromptRequest, GetPromptRequestParams, ListPromptsRequest, ServerResult,
};
use serde_json::{Map, Value as Json, json};

/// The fields of a prompt shown; icons and metadata are left out.
const SHOWN_FIELDS: [&str; 4] = ["name", "title", "description", "arguments"];

/// The server's prompts, each `{server, name, title, description, arguments}`; `[]` when it offers
/// none, `[{server, error}]` when listing them failed.
pub(super) fn listing(server: &McpServer) -> Vec<Json> {
    let name = Json::String(server.name().to_string());
    match listed(server) {
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
        Err(e) => vec![json!({"server": name, "error": format!("{e:#}")})],
    }
}

/// Every prompt the server lists, as sent; none when it does not offer prompts.
fn listed(server: &McpServer) -> Result<Vec<Json>> {
    if !server.offers_prompts() {
        return Ok(Vec::new());
    }
    server
        .list_pages("prompts/list", "prompts", |params| {
            ClientRequest::ListPromptsRequest(ListPromptsRequest::with_param(params))
        })
        .map_err(|output| anyhow!("{}", output.text))
}

/// The messages of the server's prompt `name` filled in with `arguments` (strings, as MCP prompt
/// arguments are): text inline, images and binary resources saved like a result's and referenced by
/// path. Fails, saying what to give, on an unknown prompt, a missing required argument or an unknown
/// one.
pub(super) fn get(
    server: &McpServer,
    name: &str,
    arguments: &Map<String, Json>,
) -> Result<Vec<Message>> {
    let prompts = listed(server)?;
    let Some(prompt) = prompts.iter().find(|p| p["name"] == name) else {
        let names: Vec<&str> = prompts.iter().filter_map(|p| p["name"].as_str()).collect();
        bail!(
            "the MCP server {} has no prompt named {name:?}; its prompts: {}",
            server.name(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    check_arguments(server.name(), name, &prompt["arguments"], arguments)?;
    let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(
        GetPromptRequestParams::new(name).with_arguments(arguments.clone()),
    ));
    let reply = match server.request("prompts/get", request) {
        Ok(ServerResult::GetPromptResult(reply)) => serde_json::to_value(reply)?,
        Ok(_) => bail!("the MCP server answered prompts/get with a reply of another kind"),
        Err(output) => bail!("{}", output.text),
    };
    let messages = reply["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() {
        bail!(
            "the prompt {name:?} of the MCP server {} has no messages",
            server.name()
        );
    }
    Ok(messages
        .iter()
        .map(|message| {
            let content = json!({"content": [message["content"]]});
            let text = result::to_output(&content, server.settings(), server.name()).text;
            match message["role"].as_str() {
                Some("assistant") => Message::Assistant {
                    content: text,
                    reasoning_content: None,
                    tool_calls: Vec::new(),
                },
                _ => Message::user(text),
            }
        })
        .collect())
}

/// Fails on a required argument (per the listing's `arguments`) that `given` lacks, and on a given
/// one the prompt does not take; the message lists what the prompt takes.
fn check_arguments(
    server: &str,
    prompt: &str,
    declared: &Json,
    given: &Map<String, Json>,
) -> Result<()> {
    let declared = declared.as_array().cloned().unwrap_or_default();
    let describe = |argument: &Json| {
        let name = argument["name"].as_str().unwrap_or_default();
        let required = if argument["required"] == true {
            ", required"
        } else {
            ""
        };
        match argument["description"].as_str() {
            Some(text) => format!("{name} ({text}{required})"),
            None if required.is_empty() => name.to_string(),
            None => format!("{name} (required)"),
        }
    };
    let takes = || {
        let all: Vec<String> = declared.iter().map(describe).collect();
        if all.is_empty() {
            "it takes no arguments".to_string()
        } else {
            format!("it takes {}", all.join(", "))
        }
    };
    let missing: Vec<&str> = declared
        .iter()
        .filter(|a| a["required"] == true)
        .filter_map(|a| a["name"].as_str())
        .filter(|name| !given.contains_key(*name))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the prompt {prompt:?} of the MCP server {server} needs the argument{} {}; {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            takes()
        );
    }
    if let Some(unknown) = given
        .keys()
        .find(|key| !declared.iter().any(|a| a["name"] == key.as_str()))
    {
        bail!(
            "the prompt {prompt:?} of the MCP server {server} has no argument {unknown:?}; {}",
            takes()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_arguments;
    use serde_json::json;

    #[test]
    fn missing_and_unknown_arguments_are_named_with_what_the_prompt_takes() {
        let declared = json!([
            {"name": "city", "description": "Name of the city", "required": true},
            {"name": "state"}
        ]);
        let given = |value: serde_json::Value| value.as_object().unwrap().clone();
        let missing = check_arguments("w", "args", &declared, &given(json!({"state": "CA"})));
        assert_eq!(
            missing.unwrap_err().to_string(),
            "the prompt \"args\" of the MCP server w needs the argument city; it takes city (Name of \
             the city, required), state"
        );
        let unknown = check_arguments(
            "w",
            "args",
            &declared,
            &given(json!({"city": "x", "zip": "1"})),
        );
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("has no argument \"zip\""),
        );
        assert!(check_arguments("w", "args", &declared, &given(json!({"city": "x"}))).is_ok());
    }
}
