//! The JSON-lines transcript of a run: what started it (the agent, secrets redacted), every model call
//! with its exact prompt and raw output, every tool call, every completion a server asked the model
//! for (sampling), every notice, and one `run_end` line saying why the run stopped. Each line is flushed as it is written, so a crash or a signal loses nothing.

use super::AgentEvent;
use crate::config::ResolvedAgent;
use anyhow::{Context, Result};
use serde_json::{Value as Json, json};
use std::io::Write;
use std::path::Path;

/// What replaces a secret in the transcript.
pub const REDACTED: &str = "<redacted>";

/// An open transcript file (appended to, so several runs can share one).
pub struct Transcript {
    file: std::fs::File,
    ended: bool,
}

impl Transcript {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open transcript {}", path.display()))?;
        Ok(Transcript { file, ended: false })
    }

    /// The first line: the task file and the agent as run (overrides applied, secrets redacted).
    pub fn start(&mut self, task: &Path, agent: &ResolvedAgent) -> Result<()> {
        self.write(json!({"event": "run_start", "task": task, "agent": redacted(agent)?}))
    }

    /// One line for an event the agent reported (streamed deltas are left out: the model call's line
    /// holds the whole raw output).
    pub fn record(&mut self, event: &AgentEvent) -> Result<()> {
        match event {
            AgentEvent::ModelCall { round, response } => self.write(json!({
                "event": "model_call", "round": round, "prompt": response.prompt_text,
                "prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens,
                "raw_output": response.raw_output, "finish_reason": response.finish_reason,
                "timings": response.timings, "parsed": response.output,
            })),
            AgentEvent::ToolResult { round, record } => self.write(json!({
                "event": "tool_call", "round": round, "name": record.name, "arguments": record.arguments,
                "result": record.output.text, "is_error": record.output.is_error, "files": record.output.files,
                "duration_ms": record.duration_ms,
            })),
            AgentEvent::Notice(text) => self.write(json!({"event": "notice", "text": text})),
            AgentEvent::Sampling { ask, outcome } => {
                let mut line = json!({
                    "event": "sampling", "server": ask.source, "system": ask.system,
                    "messages": ask.messages, "max_tokens": ask.max_tokens,
                    "temperature": ask.temperature, "stop": ask.stop,
                });
                match outcome {
                    Ok(response) => {
                        line["prompt"] = json!(response.prompt_text);
                        line["raw_output"] = json!(response.raw_output);
                        line["content"] = json!(response.output.content);
                        line["finish_reason"] = json!(response.finish_reason);
                        line["prompt_tokens"] = json!(response.prompt_tokens);
                        line["completion_tokens"] = json!(response.completion_tokens);
                    }
                    Err(error) => line["error"] = json!(error),
                }
                self.write(line)
            }
            AgentEvent::Stream(_) => Ok(()),
        }
    }

    /// The last line, `{"event": "run_end", ...fields}`: written once, so whoever ends the run first (the
    /// run itself, or a signal handler) says why, and a later call does nothing.
    pub fn end(&mut self, fields: Json) -> Result<()> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        let mut line = json!({"event": "run_end"});
        if let (Some(line), Json::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        self.write(line)
    }

    fn write(&mut self, value: Json) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(&value)?)?;
        self.file.flush()?;
        Ok(())
    }
}

/// The agent as the transcript shows it: `model.api_key`, the values of every MCP server's `env` and
/// `headers` (API keys, bearer tokens) and of `elicitation.content` (answers given to servers, maybe
/// personal) replaced by `<redacted>`; the names stay, so a reader sees what was set.
pub fn redacted(agent: &ResolvedAgent) -> Result<Json> {
    let mut shown = serde_json::to_value(agent)?;
    let key = &mut shown["agent"]["model"]["api_key"];
    if key.is_string() {
        *key = REDACTED.into();
    }
    if let Some(answers) = shown["agent"]["elicitation"]["content"].as_object_mut() {
        answers
            .values_mut()
            .for_each(|value| *value = REDACTED.into());
    }
    if let Some(servers) = shown["agent"]["mcpServers"].as_object_mut() {
        for server in servers.values_mut() {
            for field in ["env", "headers"] {
                if let Some(values) = server[field].as_object_mut() {
                    values
                        .values_mut()
                        .for_each(|value| *value = REDACTED.into());
                }
            }
        }
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentFile, McpServerSpec};

    #[test]
    fn api_key_and_every_server_env_and_header_value_are_redacted() {
        let mut agent: AgentFile = serde_json::from_value(json!({
            "name": "a",
            "model": {"backend": "openai", "base_url": "http://x/v1", "model": "m", "api_key": "sk-model"},
        }))
        .unwrap();
        let server = |field: &str| McpServerSpec {
            command: Some("srv".into()),
            env: if field == "env" {
                json!({"TOKEN": "env-secret", "N": 3})
                    .as_object()
                    .unwrap()
                    .clone()
            } else {
                Default::default()
            },
            headers: if field == "headers" {
                json!({"Authorization": "Bearer header-secret"})
                    .as_object()
                    .unwrap()
                    .clone()
            } else {
                Default::default()
            },
            ..Default::default()
        };
        agent.elicitation.content = json!({"email": "ada@example.com"}).as_object().cloned();
        agent.mcp_servers.insert("one".into(), server("env"));
        agent.mcp_servers.insert("two".into(), server("headers"));
        let resolved = ResolvedAgent {
            agent,
            source: "a.yaml".into(),
        };
        let shown = redacted(&resolved).unwrap();
        let text = shown.to_string();
        for secret in ["sk-model", "env-secret", "header-secret", "ada@example.com"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let servers = &shown["agent"]["mcpServers"];
        assert_eq!(
            servers["one"]["env"],
            json!({"TOKEN": REDACTED, "N": REDACTED})
        );
        assert_eq!(
            servers["two"]["headers"],
            json!({"Authorization": REDACTED})
        );
        assert_eq!(shown["agent"]["model"]["api_key"], REDACTED);
        assert_eq!(shown["agent"]["elicitation"]["content"]["email"], REDACTED);
        assert_eq!(servers["one"]["command"], "srv", "non-secret fields stay");
    }
}
