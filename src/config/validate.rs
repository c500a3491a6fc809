//! The checks serde's types cannot express: value ranges (the rules of `check`) and fields that depend
//! on each other. Each failure names the key path it is about; the loader turns that path into
//! `file:line:column` (see `locate`). Callers of the loaded structs rely on these (`validated at load`).

use super::check::{self, Verdict};
use super::{
    AgentFile, BackendKind, CodeInterpreterSpec, ElicitationChoice, ElicitationSpec, GenerateSpec,
    McpServerSpec, TaskFile,
};
use crate::model::{Device, KvCacheFormat};
use std::collections::BTreeMap;

/// A failed check: where (key path from the document's root) and what is wrong (naming the field).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: Vec<String>,
    pub message: String,
}

impl Problem {
    fn new(path: &[&str], message: impl Into<String>) -> Self {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
        }
    }
}

/// Applies a rule to the field at `path`; the message is `path rule`.
fn field(path: &[&str], verdict: Verdict) -> Result<(), Problem> {
    verdict.map_err(|rule| Problem::new(path, format!("{} {rule}", path.join("."))))
}

fn optional<T: Copy>(
    path: &[&str],
    value: Option<T>,
    rule: fn(T) -> Verdict,
) -> Result<(), Problem> {
    value.map_or(Ok(()), |v| field(path, rule(v)))
}

fn at_least_one(v: usize) -> Verdict {
    if v == 0 {
        Err("must be at least 1, not 0".into())
    } else {
        Ok(())
    }
}

/// An agent definition, whole.
pub fn agent(agent: &AgentFile) -> Result<(), Problem> {
    let m = &agent.model;
    match m.backend {
        BackendKind::Local if m.path.is_none() => {
            return Err(Problem::new(
                &["model", "path"],
                "model.path is required for the local backend (a model directory or a hub id)",
            ));
        }
        BackendKind::Openai if m.base_url.is_none() || m.model.is_none() => {
            return Err(Problem::new(
                &["model", "backend"],
                "the openai backend needs model.base_url (e.g. http://localhost:8000/v1) and model.model \
                 (the served model name)",
            ));
        }
        BackendKind::Scripted if m.path.is_none() => {
            return Err(Problem::new(
                &["model", "path"],
                "the scripted backend needs model.path: a directory with tokenizer.json and \
                 tokenizer_config.json, for the chat template",
            ));
        }
        _ => {}
    }
    optional(
        &["model", "context_length"],
        m.context_length,
        check::tokens,
    )?;
    optional(&["model", "read_timeout"], m.read_timeout, check::seconds)?;
    if m.kv_cache == KvCacheFormat::Fp8 && m.device == Device::Cpu {
        return Err(Problem::new(
            &["model", "kv_cache"],
            "kv_cache: fp8 runs on the GPU only; with device: cpu leave it out (the CPU engine keeps \
             its cache in f32)",
        ));
    }
    if let Some(rope) = &m.rope_scaling {
        optional(
            &["model", "rope_scaling", "factor"],
            rope.factor,
            check::rope_factor,
        )?;
    }
    generate(&agent.generate, "generate")?;
    if let Some(code) = &agent.tools.code_interpreter {
        code_interpreter(code, &["tools", "code_interpreter"])?;
    }
    mcp_servers(&agent.mcp_servers, "mcpServers")?;
    elicitation(&agent.elicitation)?;
    field(&["max_rounds"], at_least_one(agent.max_rounds))?;
    field(&["timeout"], check::seconds(agent.timeout))
}

/// The code interpreter's limits under the key path `root` (empty for the flags of `python` and
/// `mcp-python`, which fill a spec and check it here too, so a flag refuses what the YAML refuses).
pub fn code_interpreter(code: &CodeInterpreterSpec, root: &[&str]) -> Result<(), Problem> {
    let at = |key| [root, &[key]].concat();
    field(&at("timeout"), check::seconds(code.timeout))?;
    field(
        &at("memory_mb"),
        check::count(code.memory_mb, check::MAX_GUEST_MB),
    )?;
    field(
        &at("max_output_bytes"),
        check::count(code.max_output_bytes, 1 << 30),
    )?;
    field(&at("scratch_mb"), check::megabytes(code.scratch_mb))
}

/// Generation settings under the key `root` (an agent's, or a task's overrides).
pub fn generate(spec: &GenerateSpec, root: &str) -> Result<(), Problem> {
    let at = |key| [root, key];
    optional(&at("max_new_tokens"), spec.max_new_tokens, check::tokens)?;
    optional(&at("temperature"), spec.temperature, check::temperature)?;
    optional(&at("top_p"), spec.top_p, check::top_p)?;
    optional(&at("min_p"), spec.min_p, check::min_p)?;
    optional(
        &at("presence_penalty"),
        spec.presence_penalty,
        check::presence_penalty,
    )?;
    optional(
        &at("repetition_penalty"),
        spec.repetition_penalty,
        check::repetition_penalty,
    )?;
    if spec.stop.iter().flatten().any(String::is_empty) {
        return Err(Problem::new(
            &at("stop"),
            format!(
                "{root}.stop holds an empty text, which would end every answer before it starts"
            ),
        ));
    }
    Ok(())
}

/// `elicitation:`: content is the answer of `accept`, so the two go together.
fn elicitation(spec: &ElicitationSpec) -> Result<(), Problem> {
    match (spec.action, &spec.content) {
        (ElicitationChoice::Accept, None) => Err(Problem::new(
            &["elicitation", "action"],
            "elicitation.action accept needs elicitation.content: the fields to answer with, e.g. \
             {name: Ada}",
        )),
        (ElicitationChoice::Decline | ElicitationChoice::Cancel, Some(_)) => Err(Problem::new(
            &["elicitation", "content"],
            "elicitation.content is only sent with action: accept",
        )),
        _ => Ok(()),
    }
}

/// MCP server entries under the key `root` (`mcpServers`, or VS Code's `servers`).
pub fn mcp_servers(servers: &BTreeMap<String, McpServerSpec>, root: &str) -> Result<(), Problem> {
    for (name, server) in servers {
        let name = name.as_str();
        if server.command.is_none() == server.url.is_none() {
            return Err(Problem::new(
                &[root, name],
                format!("{root}.{name} needs either command (stdio) or url (HTTP)"),
            ));
        }
        optional(&[root, name, "timeout"], server.timeout, check::seconds)?;
        optional(
            &[root, name, "sampling_max_tokens"],
            server.sampling_max_tokens,
            check::tokens,
        )?;
        for (tool, &seconds) in &server.tool_timeouts {
            // Written as `tool_timeouts`, the location falls back to the server's entry.
            field(
                &[root, name, "toolTimeouts", tool.as_str()],
                check::seconds(seconds),
            )?;
        }
    }
    Ok(())
}

/// An agent's `roots:`, resolved against its file: each must be a directory that exists, since servers
/// are told they may work there.
pub fn roots(roots: &[std::path::PathBuf]) -> Result<(), Problem> {
    for root in roots {
        if !root.is_dir() {
            return Err(Problem::new(
                &["roots"],
                format!(
                    "roots: {} is not a directory that exists (paths are relative to this file)",
                    root.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A task's own fields (its agent is checked by [`agent`]).
pub fn task(task: &TaskFile) -> Result<(), Problem> {
    let given: Vec<&str> = [
        ("prompt", task.prompt.is_some()),
        ("prompts", task.prompts.is_some()),
        ("messages", task.messages.is_some()),
        ("prompt_from", task.prompt_from.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if let [_, second, ..] = given[..] {
        return Err(Problem::new(
            &[second],
            "give one of prompt, prompts, messages or prompt_from, not several",
        ));
    }
    match (&task.messages, &task.prompts, &task.prompt_from) {
        (Some(messages), _, _) if messages.is_empty() => {
            return Err(Problem::new(
                &["messages"],
                "messages is empty: the task needs a prompt or at least one message",
            ));
        }
        (_, Some(prompts), _) if prompts.is_empty() => {
            return Err(Problem::new(
                &["prompts"],
                "prompts is empty: list at least one prompt (each is its own run of the agent)",
            ));
        }
        (_, _, Some(from)) => {
            for (key, value) in &from.arguments {
                if value.is_object() || value.is_array() || value.is_null() {
                    return Err(Problem::new(
                        &["prompt_from", "arguments", key],
                        format!(
                            "prompt_from.arguments.{key} must be a string (MCP prompt arguments are text)"
                        ),
                    ));
                }
            }
        }
        _ if given.is_empty() => {
            return Err(Problem::new(
                &[],
                "the task needs a prompt (or prompts, messages, or prompt_from: {server, name, arguments})",
            ));
        }
        _ => {}
    }
    if let Some(overrides) = &task.generate {
        generate(overrides, "generate")?;
    }
    if let Some(rounds) = task.max_rounds {
        field(&["max_rounds"], at_least_one(rounds))?;
    }
    if let Some(rounds) = task.expect.as_ref().and_then(|e| e.max_rounds) {
        field(&["expect", "max_rounds"], at_least_one(rounds))?;
    }
    Ok(())
}
