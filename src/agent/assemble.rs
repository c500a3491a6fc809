//! Building an agent from its definition: the backend (a local model loaded, a remote server, or a
//! script), the tools (the code interpreter, the MCP servers started) and their limits. One constructor
//! for every front end (`run`, `chat`, `eval`, a server), and `build_backend` alone for one that serves
//! a model without the agent's tools. Nothing here prints: progress and notices go to the caller's
//! `on_event`, and the directory tools write files to is the caller's choice, never the process's
//! working directory read behind its back.

use super::Agent;
use crate::backend::{Backend, LocalBackend, OpenAiBackend, ScriptedBackend};
use crate::chat::{ChatTemplate, Tokenizer};
use crate::config::{self, AgentFile, BackendKind, McpServerSpec, ResolvedAgent};
use crate::engine::{Engine, PrefillProgress, Speculation};
use crate::model::hub::Download;
use crate::model::{Decoder, GenerationConfig, LoadOptions};
use crate::tools::mcp::{self, McpSettings, McpToolSource, Person, ProgressSink};
use crate::tools::python::CodeInterpreter;
use crate::tools::python::runtime::Runtime;
use crate::tools::python::sandbox::SessionOptions;
use crate::tools::sampling::SampleQueue;
use crate::tools::{Notices, ToolRegistry};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How much longer the registry waits than a tool's own timeout, so MCP calls are cancelled by the MCP
/// layer (which tells the server) before the registry gives up on them.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Largest message read from an MCP server. Past rmcp's 16 MiB default so that a 20 MB result arrives
/// and is cut with a note, instead of failing the call.
const MAX_MCP_MESSAGE_BYTES: usize = 64 << 20;
/// Characters of one MCP result kept for the model.
const MAX_MCP_OUTPUT_CHARS: usize = 20_000;
/// How long a server may take to start and answer its first listing (uvx and npx may download first).
const MCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What happens while an agent is built, for the caller to show (a progress bar, a log line).
pub enum AssembleEvent<'a> {
    /// A file of the local model being downloaded from the hub (an 8B checkpoint is 5.7 GB).
    Downloading(Download<'a>),
    /// The local model's layers being loaded: `done` of `total`.
    LoadingModel {
        dir: &'a Path,
        done: usize,
        total: usize,
    },
    /// These MCP servers are starting (seconds, when a launcher downloads them first).
    StartingServers(&'a [String]),
    /// Something the user should know: a server that failed to start and is left out, a tool's notice.
    Notice(&'a str),
}

/// The caller's choices for building an agent.
pub struct AssembleOptions {
    /// Where tools put the files they reference in their results (images, figures, blobs).
    pub output_dir: PathBuf,
    /// Receives progress and notices while the agent is built.
    pub on_event: Box<dyn Fn(AssembleEvent) + Send + Sync>,
    /// Pass each stdio MCP server's stderr lines on as notices (otherwise they are read and dropped).
    pub forward_server_stderr: bool,
    /// Makes the callback a local model's engine reports each later prefill to (a long prompt takes
    /// seconds to minutes on a CPU); None: prefills are not reported.
    pub prefill_progress: Option<fn() -> PrefillProgress>,
    /// The user's working directory, the first root MCP servers are told of (`roots/list`); the
    /// agent's `roots:` follow it. `None`: only those.
    pub working_dir: Option<PathBuf>,
    /// Who MCP servers' requests for input are put to (`chat` on a terminal); `None`: the agent
    /// file's `elicitation:` answers them.
    pub person: Option<Person>,
    /// Where MCP servers' progress reports go besides the notices (a bar on a terminal).
    pub mcp_progress: Option<ProgressSink>,
}

impl AssembleOptions {
    /// Options that write tool files to `output_dir`, ignore progress, drop servers' stderr and give
    /// servers no working directory as a root.
    pub fn new(output_dir: PathBuf) -> Self {
        AssembleOptions {
            output_dir,
            on_event: Box::new(|_| {}),
            forward_server_stderr: false,
            prefill_progress: None,
            working_dir: None,
            person: None,
            mcp_progress: None,
        }
    }

    /// Sends progress and notices to `on_event`.
    pub fn with_events(mut self, on_event: impl Fn(AssembleEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Box::new(on_event);
        self
    }
}

/// The agent a definition describes: its backend, tools and settings.
pub fn build_agent(definition: &ResolvedAgent, options: &AssembleOptions) -> Result<Agent> {
    check_rounds(definition)?;
    agent_with_backend(definition, options, build_backend(definition, options)?)
}

/// Refuses an agent that may never call its model (before a model is loaded for it).
pub fn check_rounds(definition: &ResolvedAgent) -> Result<()> {
    if definition.agent.max_rounds == 0 {
        bail!(
            "{}: max_rounds must be at least 1 (the agent may call the model max_rounds times)",
            definition.source.display()
        );
    }
    Ok(())
}

/// The agent a definition describes, answering with `backend` (one of a `BackendPool`'s).
pub fn agent_with_backend(
    definition: &ResolvedAgent,
    options: &AssembleOptions,
    backend: Box<dyn Backend>,
) -> Result<Agent> {
    Ok(AgentTools::start(definition, options)?.with_backend(definition, backend))
}

/// An agent's tools started (its MCP servers running, their sampling routed to the model it will
/// get), waiting for a backend: `run` starts a run's tools before it hands over a backend, so a run
/// whose tools fail keeps the backend (a loaded model) for the next.
pub struct AgentTools {
    registry: ToolRegistry,
    servers: Option<Arc<McpToolSource>>,
}

impl AgentTools {
    /// Starts the tools of a definition that may call its model (`check_rounds`).
    pub fn start(definition: &ResolvedAgent, options: &AssembleOptions) -> Result<Self> {
        check_rounds(definition)?;
        let (registry, servers) = tools_and_servers(definition, options, true)?;
        Ok(AgentTools { registry, servers })
    }

    /// The agent of `definition` (the one the tools were started for) answering with `backend`.
    pub fn with_backend(self, definition: &ResolvedAgent, backend: Box<dyn Backend>) -> Agent {
        let a = &definition.agent;
        let agent = Agent::new(
            backend,
            self.registry,
            a.generate.clone(),
            a.system.clone(),
            a.max_rounds,
        );
        match self.servers {
            Some(servers) => agent.with_mcp_servers(servers),
            None => agent,
        }
    }
}

/// The backend a definition's `model` describes; a local model is loaded here (progress reported as
/// `AssembleEvent::LoadingModel`).
pub fn build_backend(
    definition: &ResolvedAgent,
    options: &AssembleOptions,
) -> Result<Box<dyn Backend>> {
    let spec = &definition.agent.model;
    let source = definition.source.display();
    match spec.backend {
        BackendKind::Scripted => {
            let dir = required(
                spec.path.as_deref(),
                definition,
                "model.path",
                "the scripted backend reads the chat template and tokenizer from it",
            )?;
            let backend =
                ScriptedBackend::new(ChatTemplate::from_model_dir(dir)?, spec.script.clone());
            Ok(Box::new(match spec.context_length {
                Some(n) => backend.with_context(Tokenizer::from_model_dir(dir)?, n),
                None => backend,
            }))
        }
        BackendKind::Local => {
            let local = LocalModel::resolve(definition, options)?;
            let decoder = crate::model::load_decoder(&local.dir, &local.load, |done, total| {
                local.report_loading(options, done, total)
            })?;
            Ok(Box::new(local.backend(decoder, definition, options)))
        }
        BackendKind::Openai => {
            let api_key = match (&spec.api_key, &spec.api_key_env) {
                (Some(key), _) => Some(key.clone()),
                (None, Some(var)) => Some(std::env::var(var).with_context(|| {
                    format!("{source}: model.api_key_env names {var}, which is not set")
                })?),
                (None, None) => None,
            };
            let why = "the openai backend needs the server's address (e.g. http://localhost:8000/v1) and \
                       the served model's name";
            let base_url = required(spec.base_url.as_deref(), definition, "model.base_url", why)?;
            let model = required(spec.model.as_deref(), definition, "model.model", why)?;
            let lookup = |name: &str| std::env::var(name).ok();
            let base_url = config::expand_env(base_url, lookup)
                .with_context(|| format!("{source}: model.base_url"))?;
            let backend = OpenAiBackend::new(&base_url, api_key, model.to_string())?;
            Ok(Box::new(match spec.read_timeout {
                Some(seconds) => backend.with_read_timeout(Duration::from_secs_f64(seconds)),
                None => backend,
            }))
        }
    }
}

/// A local model's directory (downloaded if it was a hub id), what the backend reads beside the weights,
/// and how to load them: everything but the decoder, so one loaded model can serve several backends
/// (`BackendPool`).
pub(super) struct LocalModel {
    pub dir: PathBuf,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    generation: GenerationConfig,
    pub load: LoadOptions,
}

impl LocalModel {
    pub fn resolve(definition: &ResolvedAgent, options: &AssembleOptions) -> Result<Self> {
        let spec = &definition.agent.model;
        let path = required(
            spec.path.as_deref(),
            definition,
            "model.path",
            "the local backend loads the model from this directory or hub id",
        )?;
        let dir = crate::model::hub::resolve_model_dir_reporting(path, &mut |download| {
            (options.on_event)(AssembleEvent::Downloading(download))
        })
        .with_context(|| format!("{}: model.path", definition.source.display()))?;
        Ok(LocalModel {
            template: ChatTemplate::from_model_dir(&dir)?,
            tokenizer: Tokenizer::from_model_dir(&dir)?,
            generation: GenerationConfig::load(&dir)?,
            load: LoadOptions {
                device: spec.device,
                precision: spec.precision.unwrap_or_default(),
                rope_scaling: spec.rope_scaling.clone(),
                context_length: spec.context_length,
                kv_cache: spec.kv_cache,
            },
            dir,
        })
    }

    pub fn report_loading(&self, options: &AssembleOptions, done: usize, total: usize) {
        (options.on_event)(AssembleEvent::LoadingModel {
            dir: &self.dir,
            done,
            total,
        })
    }

    /// A backend generating on `decoder` with the definition's speculation and the caller's prefill
    /// reporting.
    pub fn backend(
        &self,
        decoder: Box<dyn Decoder>,
        definition: &ResolvedAgent,
        options: &AssembleOptions,
    ) -> LocalBackend {
        let spec = &definition.agent.model;
        let mut engine = Engine::from_decoder(decoder);
        engine.set_prefill_progress(options.prefill_progress.map(|make| make()));
        engine.set_speculation(
            spec.speculation
                .unwrap_or_else(|| Speculation::default_for(spec.device)),
        );
        LocalBackend::new(
            self.template.clone(),
            self.tokenizer.clone(),
            engine,
            self.generation.clone(),
        )
    }
}

/// A field the backend cannot do without, or an error naming the file and the field.
fn required<'a, T: ?Sized>(
    value: Option<&'a T>,
    definition: &ResolvedAgent,
    field: &str,
    why: &str,
) -> Result<&'a T> {
    value.with_context(|| format!("{}: {field} is missing: {why}", definition.source.display()))
}

/// A timeout from the agent file as a duration, or an error naming the field (never a panic on a
/// negative, NaN or huge value).
fn seconds(value: f64, definition: &ResolvedAgent, field: &str) -> Result<Duration> {
    if value.is_nan() || value <= 0.0 {
        bail!(
            "{}: {field} must be a positive number of seconds, not {value}",
            definition.source.display()
        );
    }
    Duration::try_from_secs_f64(value).map_err(|_| {
        anyhow::anyhow!(
            "{}: {field} ({value} seconds) is too long",
            definition.source.display()
        )
    })
}

/// The tools of a definition (the code interpreter, the MCP servers started), as the prompt will show
/// them; `qwen3-agent tools` lists or calls them without a model.
pub fn build_tools(definition: &ResolvedAgent, options: &AssembleOptions) -> Result<ToolRegistry> {
    Ok(tools_and_servers(definition, options, false)?.0)
}

/// The tools of a definition and, when it has any, its started MCP servers (for their prompts).
/// `with_model`: the agent's model answers the servers' sampling requests (the registry's
/// `samples()`), so sampling is declared to them.
fn tools_and_servers(
    definition: &ResolvedAgent,
    options: &AssembleOptions,
    with_model: bool,
) -> Result<(ToolRegistry, Option<Arc<McpToolSource>>)> {
    let a = &definition.agent;
    let timeout = seconds(a.timeout, definition, "timeout")?;
    let code_timeout = match &a.tools.code_interpreter {
        Some(spec) => seconds(spec.timeout, definition, "tools.code_interpreter.timeout")?,
        None => Duration::ZERO,
    };
    let mut registry = ToolRegistry::new(timeout.max(code_timeout).saturating_add(CANCEL_GRACE));
    if let Some(spec) = &a.tools.code_interpreter {
        let runtime = Runtime::open(spec.runtime_dir.as_deref())
            .with_context(|| format!("{}: tools.code_interpreter", definition.source.display()))?;
        let session = SessionOptions::from_spec(spec, options.output_dir.clone());
        let interpreter = CodeInterpreter::new(runtime, session).with_notices(registry.notices());
        registry.register(Arc::new(interpreter))?;
    }
    let samples = with_model.then(|| registry.samples());
    let servers = add_mcp_servers(
        &mut registry,
        &config::mcp_servers(definition)?,
        timeout,
        Some(a),
        options,
        samples,
    )?;
    Ok((registry, servers))
}

/// The tools of MCP servers alone (an MCP config file's), each call bounded by `call_timeout`.
pub fn build_mcp_tools(
    servers: &BTreeMap<String, McpServerSpec>,
    call_timeout: Duration,
    options: &AssembleOptions,
) -> Result<ToolRegistry> {
    let mut registry = ToolRegistry::new(call_timeout.saturating_add(CANCEL_GRACE));
    add_mcp_servers(&mut registry, servers, call_timeout, None, options, None)?;
    Ok(registry)
}

/// The MCP servers of a definition started alone (not its other tools), for what they offer besides
/// tools (`McpToolSource::prompts`); `None` when it has no enabled server. Failures and notices go to
/// `on_event`, as when the agent is built.
pub fn start_mcp_servers(
    definition: &ResolvedAgent,
    options: &AssembleOptions,
) -> Result<Option<Arc<McpToolSource>>> {
    let a = &definition.agent;
    let timeout = seconds(a.timeout, definition, "timeout")?;
    let notices = Notices::default();
    let source = start_servers(
        &config::mcp_servers(definition)?,
        timeout,
        Some(a),
        options,
        &notices,
        None,
    )?;
    report(&notices, options);
    Ok(source)
}

/// Starts the enabled servers and registers their tools; a server that fails (and is not `required`)
/// is reported as a notice and left out. Returns the servers started (`None` when none are enabled).
fn add_mcp_servers(
    registry: &mut ToolRegistry,
    servers: &BTreeMap<String, McpServerSpec>,
    call_timeout: Duration,
    agent: Option<&AgentFile>,
    options: &AssembleOptions,
    samples: Option<SampleQueue>,
) -> Result<Option<Arc<McpToolSource>>> {
    let notices = registry.notices();
    let source = start_servers(servers, call_timeout, agent, options, &notices, samples)?;
    if let Some(source) = &source {
        registry.add_source(source.clone())?;
    }
    report(&notices, options);
    Ok(source)
}

/// Starts the enabled servers (`None` when there are none); those that fail and are not `required` are
/// reported and left out. Servers are given the working directory and the agent's `roots:` as roots,
/// their requests for input are answered as its `elicitation:` says, their sampling requests go to
/// `samples` (not declared without it), and they report to `notices`.
fn start_servers(
    servers: &BTreeMap<String, McpServerSpec>,
    call_timeout: Duration,
    agent: Option<&AgentFile>,
    options: &AssembleOptions,
    notices: &Notices,
    samples: Option<SampleQueue>,
) -> Result<Option<Arc<McpToolSource>>> {
    let names: Vec<String> = servers
        .iter()
        .filter(|(_, spec)| !spec.disabled)
        .map(|(name, _)| name.clone())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    (options.on_event)(AssembleEvent::StartingServers(&names));
    let settings = McpSettings {
        connect_timeout: MCP_CONNECT_TIMEOUT,
        call_timeout,
        max_output_chars: MAX_MCP_OUTPUT_CHARS,
        max_message_bytes: MAX_MCP_MESSAGE_BYTES,
        output_dir: options.output_dir.clone(),
        notices: notices.clone(),
        forward_stderr: options.forward_server_stderr,
        roots: options
            .working_dir
            .iter()
            .chain(agent.into_iter().flat_map(|a| &a.roots))
            .cloned()
            .collect(),
        elicitation: agent.map(|a| a.elicitation.clone()).unwrap_or_default(),
        person: options.person.clone(),
        progress: options.mcp_progress.clone(),
        sampling: samples,
    };
    let started = mcp::start_servers(servers, &settings)?;
    for failure in &started.failures {
        (options.on_event)(AssembleEvent::Notice(&format!(
            "{failure}; continuing without it"
        )));
    }
    Ok(Some(started.source))
}

/// Passes the queued notices on to `on_event`.
fn report(notices: &Notices, options: &AssembleOptions) {
    for notice in notices.drain() {
        (options.on_event)(AssembleEvent::Notice(&notice));
    }
}
