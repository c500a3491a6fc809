//! YAML agent and task definitions.
//!
//! YAML is read with serde-saphyr: maintained (serde_yaml is archived), pure Rust, and its errors carry
//! line and column, which every message here reports as `file:line:column`. Unknown keys are errors, so a
//! typo never silently changes behaviour. Relative paths resolve against the file that names them.
//! After parsing, `validate` checks ranges and fields that depend on each other; its failures are
//! reported at the line of the key they are about too (`locate`), so every config error has a location.

pub mod check;
mod expand;
mod locate;
pub(crate) mod validate;

use crate::model::Precision;
use anyhow::{Context, Result, bail};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};

pub use expand::expand_env;
pub use validate::Problem;

/// An agent: which model, how to generate, what it may call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub model: ModelSpec,
    #[serde(default)]
    pub generate: GenerateSpec,
    /// The system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// MCP servers in the Claude Desktop / Qwen-Agent shape.
    #[serde(default, rename = "mcpServers")]
    pub mcp_servers: std::collections::BTreeMap<String, McpServerSpec>,
    /// A JSON file holding `{"mcpServers": {...}}` (or VS Code's `{"servers": {...}}`).
    #[serde(default)]
    pub mcp_config: Option<PathBuf>,
    /// Built-in tools, e.g. `tools: {code_interpreter: {timeout: 30}}`.
    #[serde(default)]
    pub tools: BuiltinTools,
    /// Model calls allowed before the run stops with a message saying so (at least 1, validated at load).
    #[serde(default = "default_max_rounds")]
    pub max_rounds: usize,
    /// Default per-tool-call timeout, seconds (validated at load: `check::seconds`).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Directories (relative to this file) MCP servers are told they may work in, after the working
    /// directory (`roots/list`); each must exist (checked at load).
    #[serde(default)]
    pub roots: Vec<PathBuf>,
    /// How MCP servers' requests for input are answered (no one is asked): `decline` by default.
    #[serde(default)]
    pub elicitation: ElicitationSpec,
}

/// The fixed answer to MCP servers' requests for input (elicitation), since runs ask no one:
/// `{action: decline}` (the default), `{action: cancel}`, or `{action: accept, content: {...}}`, the
/// content checked against each request's schema (a mismatch is declined). Validated at load: content
/// goes with `accept` and only with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElicitationSpec {
    #[serde(default)]
    pub action: ElicitationChoice,
    #[serde(default)]
    pub content: Option<Map<String, Json>>,
}

/// What an elicitation is answered with (the MCP actions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElicitationChoice {
    Accept,
    #[default]
    Decline,
    Cancel,
}

/// The built-in tools an agent enables; a key with no value takes the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinTools {
    /// Python in a wasm sandbox, stateful across the calls of one run.
    #[serde(default, deserialize_with = "enabled_with_defaults")]
    pub code_interpreter: Option<CodeInterpreterSpec>,
}

fn enabled_with_defaults<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<CodeInterpreterSpec>, D::Error> {
    Ok(Some(
        Option::<CodeInterpreterSpec>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// The code interpreter's limits and mounts; every limit is validated at load (see `check`), so
/// converting them to durations and bytes cannot panic or overflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeInterpreterSpec {
    /// Wall-clock seconds per cell (a cell that runs longer loses the session's state).
    pub timeout: f64,
    /// Guest memory cap: past it Python raises MemoryError (at most 4096: the guest is wasm32).
    pub memory_mb: usize,
    /// Bytes of stdout (and of stderr) kept per cell.
    pub max_output_bytes: usize,
    /// Cap on the files a session writes to its scratch dir.
    pub scratch_mb: u64,
    /// Read-only dirs (relative to this file) mounted at `/inputs/<name>`.
    pub inputs: Vec<PathBuf>,
    /// Where `qwen3-agent setup python` installed the runtime, if not the default cache dir.
    pub runtime_dir: Option<PathBuf>,
}

impl Default for CodeInterpreterSpec {
    fn default() -> Self {
        CodeInterpreterSpec {
            timeout: 30.0,
            memory_mb: 1024,
            max_output_bytes: 20_000,
            scratch_mb: 256,
            inputs: Vec::new(),
            runtime_dir: None,
        }
    }
}

fn default_max_rounds() -> usize {
    8
}
fn default_timeout() -> f64 {
    60.0
}

/// One MCP server entry, in the shape Claude Desktop, Cursor, VS Code and Qwen-Agent configs use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerSpec {
    /// stdio servers: the program and its arguments.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Map<String, Json>,
    /// Which of our environment variables a stdio server sees besides `env`: by default only the few the
    /// official MCP SDKs pass (HOME, LOGNAME, PATH, SHELL, TERM, USER), so secrets in ours stay ours.
    #[serde(default, alias = "inheritEnv")]
    pub inherit_env: InheritEnv,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP servers.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: Map<String, Json>,
    /// `stdio`, `http` / `streamable-http`, or `sse` (VS Code's field).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Fail the run when this server cannot start (default: report it and continue without it).
    #[serde(default)]
    pub required: bool,
    /// Per-call timeout in seconds for this server's tools (validated at load: `check::seconds`).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Per-tool overrides of `timeout`, by the server's tool name (e.g. a slow `search`); validated
    /// like it.
    #[serde(default, rename = "toolTimeouts", alias = "tool_timeouts")]
    pub tool_timeouts: std::collections::BTreeMap<String, f64>,
    /// Name this server's tools `{server}-{tool}`.
    #[serde(default)]
    pub prefix: bool,
    /// Whether the server may ask the agent's model for completions (`sampling/createMessage`); unset:
    /// yes. `false`: sampling is not declared to it and its requests are refused.
    #[serde(default)]
    pub sampling: Option<bool>,
    /// Most tokens one of its sampling requests may generate, whatever `maxTokens` it asks for
    /// (default 1024; validated like `max_new_tokens`).
    #[serde(default)]
    pub sampling_max_tokens: Option<usize>,
    /// The lowest level of the server's log messages it should send and we show as notices (unset:
    /// the server's own choice is asked for nothing, and warning and above are shown).
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    #[serde(default)]
    pub disabled: bool,
}

/// An MCP log level (RFC 5424's, lowest first), for `log_level:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

/// `inherit_env` of an MCP server: `false` (the default: only the MCP SDKs' short list), `true` (our
/// whole environment), or a list of variable names passed on top of the short list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "true, false, or a list of environment variable names, e.g. [SOME_API_TOKEN]"
)]
pub enum InheritEnv {
    All(bool),
    Names(Vec<String>),
}

impl Default for InheritEnv {
    fn default() -> Self {
        InheritEnv::All(false)
    }
}

/// Where generation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The built-in engine (CPU or GPU).
    #[default]
    Local,
    /// An OpenAI-compatible server (vLLM, SGLang).
    Openai,
    /// Replays `script` (raw model outputs) — for testing agent definitions and the loop.
    Scripted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default)]
    pub backend: BackendKind,
    /// Local model directory (or the tokenizer directory for `scripted`), relative to this file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Model name sent to an OpenAI-compatible server.
    #[serde(default)]
    pub model: Option<String>,
    /// openai: seconds to wait for the server's next bytes (headers, or the next chunk of the stream)
    /// before the call fails; default 300, room for a long prefill.
    #[serde(default)]
    pub read_timeout: Option<f64>,
    #[serde(default)]
    pub device: Device,
    /// KV cache positions (validated at load: 1 to `check::MAX_CONTEXT`).
    #[serde(default)]
    pub context_length: Option<usize>,
    /// YaRN for long contexts, e.g. `{rope_type: yarn, factor: 4.0, original_max_position_embeddings: 32768}`;
    /// replaces config.json's.
    #[serde(default)]
    pub rope_scaling: Option<crate::model::config::RopeScaling>,
    /// The KV cache's format: `f16` (default) or `fp8` (GPU only: half the memory per position, a
    /// small logits error; BENCHMARKS.md).
    #[serde(default)]
    pub kv_cache: crate::model::KvCacheFormat,
    /// How the local engine treats activations (see `Precision`; on the GPU it only picks the lm_head's
    /// format).
    #[serde(default)]
    pub precision: Option<Precision>,
    /// The local engine's speculative decoding: `off`, or `prompt_lookup` (drafts looked up in the
    /// prompt and output, verified several tokens per forward pass; the same ids under greedy
    /// decoding). Unset: `Speculation::default_for` the device (off on each, as measured).
    #[serde(default)]
    pub speculation: Option<crate::engine::Speculation>,
    /// Raw outputs, one per round, for the scripted backend.
    #[serde(default)]
    pub script: Vec<String>,
}

pub use crate::model::Device;

/// Generation settings; unset values take the model's mode-aware defaults. Set values are validated
/// at load (the ranges in `check`), in agents and in task overrides alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// The hard switch: false renders the prompt with thinking disabled.
    #[serde(default)]
    pub thinking: Option<bool>,
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Texts that end the answer when generated (not included).
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Tool calls under the tools' grammar (the local engine's constrained decoding): text stays
    /// free until the model opens `<tool_call>`, then the call must name one of the tools with
    /// arguments valid against its schema. A small model's calls then always parse.
    #[serde(default)]
    pub constrain_tool_calls: Option<bool>,
}

impl GenerateSpec {
    /// Fields set in `other` win.
    pub fn overlay(&mut self, other: &GenerateSpec) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        take!(
            thinking,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            presence_penalty,
            repetition_penalty,
            seed,
            stop,
            constrain_tool_calls
        );
    }

    /// The sampling these settings ask for: each one set here replaces the backend's default in `base`.
    pub fn sampling(&self, base: crate::engine::SamplingParams) -> crate::engine::SamplingParams {
        crate::engine::SamplingParams {
            temperature: self.temperature.unwrap_or(base.temperature),
            top_k: self.top_k.unwrap_or(base.top_k),
            top_p: self.top_p.unwrap_or(base.top_p),
            min_p: self.min_p.unwrap_or(base.min_p),
            presence_penalty: self.presence_penalty.unwrap_or(base.presence_penalty),
            repetition_penalty: self.repetition_penalty.unwrap_or(base.repetition_penalty),
            seed: self.seed.unwrap_or(base.seed),
        }
    }
}

/// Checks generation settings that came from elsewhere than a file (a server's request) by the rules
/// a file's `generate` block follows; the failure names the field (`root.key`) it is about.
pub fn check_generate(spec: &GenerateSpec, root: &str) -> Result<(), Problem> {
    validate::generate(spec, root)
}

/// A task: an agent plus the input to run it on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    /// Spanned so a missing agent file can be reported at the `agent:` line.
    pub agent: serde_saphyr::Spanned<AgentRef>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// Several prompts, each its own run of the agent (`run` runs them at once, batched on one model).
    #[serde(default)]
    pub prompts: Option<Vec<String>>,
    #[serde(default)]
    pub messages: Option<Vec<crate::chat::Message>>,
    /// The input as one of the agent's MCP servers' prompts makes it (got when the run starts).
    #[serde(default)]
    pub prompt_from: Option<PromptFrom>,
    /// Overrides of the agent's generation settings.
    #[serde(default)]
    pub generate: Option<GenerateSpec>,
    #[serde(default)]
    pub max_rounds: Option<usize>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// A task's input taken from an MCP prompt: `{server, name, arguments}`. The server must be one of the
/// agent's (checked at load); the prompt and its arguments are checked against the server's listing
/// when the run starts. Argument values are strings (numbers and booleans are written as text).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFrom {
    pub server: String,
    pub name: String,
    #[serde(default)]
    pub arguments: Map<String, Json>,
    /// `file:line:column` of `prompt_from`, for the errors only the server can reveal.
    #[serde(skip)]
    pub at: String,
}

/// Checks on the final result (`run` exits non-zero when one fails).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Substrings the final answer must contain.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Tool names that must have been called (in any order).
    #[serde(default)]
    pub tools_called: Vec<String>,
    #[serde(default)]
    pub max_rounds: Option<usize>,
}

/// `agent:` is a path to an agent file or the agent itself.
#[derive(Debug, Clone)]
pub enum AgentRef {
    Path(PathBuf),
    Inline(Box<AgentFile>),
}

impl<'de> Deserialize<'de> for AgentRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = AgentRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path to an agent file, or an agent definition")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AgentRef, E> {
                Ok(AgentRef::Path(PathBuf::from(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AgentRef, A::Error> {
                AgentFile::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|a| AgentRef::Inline(Box::new(a)))
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

/// An agent definition with every path resolved and the task's overrides applied.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedAgent {
    pub agent: AgentFile,
    /// The file the agent came from (for messages).
    pub source: PathBuf,
}

/// A task ready to run.
#[derive(Debug, Clone)]
pub struct ResolvedTask {
    pub agent: ResolvedAgent,
    /// The input of each run: one for `prompt` or `messages`, one per entry of `prompts`; none when the
    /// input comes from `prompt_from`.
    pub inputs: Vec<Vec<crate::chat::Message>>,
    /// The MCP prompt the input comes from, its argument values as strings.
    pub prompt_from: Option<PromptFrom>,
    pub expect: Option<Expect>,
    pub source: PathBuf,
}

/// Parses YAML text, reporting errors as `file:line:column: message`.
pub fn parse_yaml<T: de::DeserializeOwned>(text: &str, file: &Path) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or("invalid YAML").trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        match e.location() {
            Some(loc) => {
                let own_prefix = format!("line {} column {}: ", loc.line(), loc.column());
                let first = first.strip_prefix(&own_prefix).unwrap_or(first);
                anyhow::anyhow!(
                    "{}:{}:{}: {}",
                    file.display(),
                    loc.line(),
                    loc.column(),
                    first
                )
            }
            None => anyhow::anyhow!("{}: {}", file.display(), first),
        }
    })
}

/// The largest agent, task or MCP config file read: far above any real definition, and it bounds the
/// memory a stray file (a log, a model shard passed by mistake) can make the parser take.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

fn read(file: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", file.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!(
            "{} is larger than {} MiB: is it really an agent, task or MCP config file?",
            file.display(),
            MAX_CONFIG_BYTES >> 20
        );
    }
    Ok(text)
}

/// Every MCP server of an agent: `mcpServers` plus those of `mcp_config` (Claude Desktop's
/// `{"mcpServers": {...}}` or VS Code's `{"servers": {...}}`).
pub fn mcp_servers(
    agent: &ResolvedAgent,
) -> Result<std::collections::BTreeMap<String, McpServerSpec>> {
    let mut servers = agent.agent.mcp_servers.clone();
    if let Some(path) = &agent.agent.mcp_config {
        servers.extend(load_mcp_config(path)?);
    }
    Ok(servers)
}

/// Reads an MCP config file as users paste it from other clients.
pub fn load_mcp_config(path: &Path) -> Result<std::collections::BTreeMap<String, McpServerSpec>> {
    /// Other keys (VS Code's `inputs`, Claude's global settings) belong to those clients.
    #[derive(Deserialize)]
    struct McpConfigFile {
        #[serde(rename = "mcpServers")]
        mcp_servers: Option<std::collections::BTreeMap<String, McpServerSpec>>,
        servers: Option<std::collections::BTreeMap<String, McpServerSpec>>,
    }
    let text = read(path)?;
    let file: McpConfigFile = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    let (root, servers) = match (file.mcp_servers, file.servers) {
        (Some(servers), _) => ("mcpServers", servers),
        (None, Some(servers)) => ("servers", servers),
        (None, None) => bail!(
            "{}: expected an \"mcpServers\" (or VS Code \"servers\") object",
            path.display()
        ),
    };
    validate::mcp_servers(&servers, root).map_err(|p| located(path, &text, &[], p))?;
    Ok(servers)
}

/// A failed check as `file:line:column: message`, at the key it is about (`prefix` leads from the
/// document's root to where the checked value sits). Problems about the whole document point at 1:1.
fn located(file: &Path, text: &str, prefix: &[&str], problem: validate::Problem) -> anyhow::Error {
    let path: Vec<&str> = prefix
        .iter()
        .copied()
        .chain(problem.path.iter().map(String::as_str))
        .collect();
    let (line, column) = locate::locate(text, &path).map_or((1, 1), |l| (l.line(), l.column()));
    anyhow::anyhow!("{}:{line}:{column}: {}", file.display(), problem.message)
}

/// Loads, checks and resolves an agent file.
pub fn load_agent(file: &Path) -> Result<ResolvedAgent> {
    parse_agent(&read(file)?, file)
}

/// Checks and resolves an agent definition given as YAML text; `file` names it in messages and
/// anchors its relative paths.
pub fn parse_agent(text: &str, file: &Path) -> Result<ResolvedAgent> {
    let agent: AgentFile = parse_yaml(text, file)?;
    validate::agent(&agent).map_err(|p| located(file, text, &[], p))?;
    let resolved = resolve_agent(agent, file);
    validate::roots(&resolved.agent.roots).map_err(|p| located(file, text, &[], p))?;
    Ok(resolved)
}

fn resolve_agent(mut agent: AgentFile, file: &Path) -> ResolvedAgent {
    let dir = file.parent().unwrap_or(Path::new("."));
    if let Some(path) = &agent.model.path {
        agent.model.path = Some(resolve_model_path(dir, path));
    }
    if let Some(path) = &agent.mcp_config {
        agent.mcp_config = Some(dir.join(path));
    }
    agent.roots = agent.roots.iter().map(|p| dir.join(p)).collect();
    if let Some(code) = &mut agent.tools.code_interpreter {
        code.inputs = code.inputs.iter().map(|p| dir.join(p)).collect();
        code.runtime_dir = code.runtime_dir.as_ref().map(|p| dir.join(p));
    }
    ResolvedAgent {
        agent,
        source: file.to_path_buf(),
    }
}

/// Relative paths are relative to the defining file. Only a hub id (`Qwen/Qwen3-8B-AWQ`, see
/// `hub::is_hub_id`) with no such directory beside the file is kept as written; any other missing path
/// stays a path, so it is reported as a missing directory rather than looked up on the hub.
fn resolve_model_path(dir: &Path, path: &Path) -> PathBuf {
    let joined = dir.join(path);
    match path.to_str() {
        Some(id) if !joined.exists() && crate::model::hub::is_hub_id(id) => path.to_path_buf(),
        _ => joined,
    }
}

/// `prompt_from` with its server checked against the agent's (enabled) servers, its arguments as
/// strings and its location noted.
fn resolve_prompt_from(
    mut from: PromptFrom,
    agent: &ResolvedAgent,
    file: &Path,
    text: &str,
) -> Result<PromptFrom> {
    let servers = mcp_servers(agent)?;
    let enabled: Vec<&str> = servers
        .iter()
        .filter(|(_, spec)| !spec.disabled)
        .map(|(name, _)| name.as_str())
        .collect();
    if !enabled.contains(&from.server.as_str()) {
        let known = if enabled.is_empty() {
            "the agent has no enabled MCP servers".to_string()
        } else {
            format!("the agent's servers: {}", enabled.join(", "))
        };
        let problem = Problem {
            path: vec!["prompt_from".into(), "server".into()],
            message: format!(
                "prompt_from.server names {:?}, which is not an enabled MCP server of the agent; {known}",
                from.server
            ),
        };
        return Err(located(file, text, &[], problem));
    }
    for value in from.arguments.values_mut() {
        if !value.is_string() {
            *value = Json::String(value.to_string());
        }
    }
    let at = locate::locate(text, &["prompt_from"]).map_or((1, 1), |l| (l.line(), l.column()));
    from.at = format!("{}:{}:{}", file.display(), at.0, at.1);
    Ok(from)
}

/// Loads a task file and the agent it names, checking both.
pub fn load_task(file: &Path) -> Result<ResolvedTask> {
    parse_task(&read(file)?, file)
}

/// A task given as YAML text, as [`load_task`] reads it; `file` names it in messages and anchors its
/// relative paths (an `agent:` path is read from there).
pub fn parse_task(text: &str, file: &Path) -> Result<ResolvedTask> {
    let task: TaskFile = parse_yaml(text, file)?;
    validate::task(&task).map_err(|p| located(file, text, &[], p))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let at = task.agent.defined;
    let mut agent = match task.agent.value {
        AgentRef::Path(path) => load_agent(&dir.join(&path)).with_context(|| {
            format!(
                "{}:{}:{}: loading the agent file {}",
                file.display(),
                at.line(),
                at.column(),
                path.display()
            )
        })?,
        AgentRef::Inline(agent) => {
            validate::agent(&agent).map_err(|p| located(file, text, &["agent"], p))?;
            let resolved = resolve_agent(*agent, file);
            validate::roots(&resolved.agent.roots)
                .map_err(|p| located(file, text, &["agent"], p))?;
            resolved
        }
    };
    if let Some(overrides) = &task.generate {
        agent.agent.generate.overlay(overrides);
    }
    if let Some(rounds) = task.max_rounds {
        agent.agent.max_rounds = rounds;
    }
    let prompt_from = match task.prompt_from {
        Some(from) => Some(resolve_prompt_from(from, &agent, file, text)?),
        None => None,
    };
    // `validate::task` saw at most one of them (none: `prompt_from`), and no empty list.
    let user = |prompt: String| vec![crate::chat::Message::user(prompt)];
    let inputs = match (task.prompt, task.prompts, task.messages) {
        (Some(prompt), _, _) => vec![user(prompt)],
        (_, Some(prompts), _) => prompts.into_iter().map(user).collect(),
        (_, _, Some(messages)) => vec![messages],
        (None, None, None) => Vec::new(),
    };
    Ok(ResolvedTask {
        agent,
        inputs,
        prompt_from,
        expect: task.expect,
        source: file.to_path_buf(),
    })
}
