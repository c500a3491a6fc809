//! Tool dispatch: the registry of everything the model may call, validation, concurrent calls with
//! timeouts, and results shaped for a text-only model.

mod cancel;
pub mod mcp;
mod notice;
pub mod python;
pub mod sampling;

pub use cancel::Cancel;
pub use notice::Notices;
use sampling::SampleQueue;

use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Something the model can call. Implementations: MCP tools (`mcp`), the code interpreter (`python`).
pub trait Tool: Send + Sync {
    /// The name the model uses.
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema of the arguments, kept exactly as the source gave it (key order included).
    fn parameters(&self) -> &Json;
    /// Runs one call. Errors are results too (`is_error`), so the model can react to them.
    fn call(&self, arguments: &Map<String, Json>) -> ToolOutput;
    /// Runs one call that `cancel` may stop (the user interrupted the run). Tools that can stop early
    /// and tell the other side (MCP: `notifications/cancelled`) override it; by default the call runs
    /// on and the caller abandons it.
    fn call_cancellable(&self, arguments: &Map<String, Json>, cancel: &Cancel) -> ToolOutput {
        let _ = cancel;
        self.call(arguments)
    }
}

/// A provider of several tools whose list can change while the agent runs (an MCP server that sends
/// notifications/tools/list_changed).
pub trait ToolSource: Send + Sync {
    /// The tools it offers now.
    fn tools(&self) -> Vec<Arc<dyn Tool>>;
    /// Its tools, when they changed since the last call; `None` otherwise (cheap: called every turn).
    fn changed_tools(&self) -> Option<Vec<Arc<dyn Tool>>>;
}

/// A call's result as the model will read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
    /// Files (images, binary resources) written for the user and referenced in `text`.
    pub files: Vec<String>,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>) -> Self {
        ToolOutput {
            text: text.into(),
            is_error: false,
            files: Vec::new(),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        ToolOutput {
            text: text.into(),
            is_error: true,
            files: Vec::new(),
        }
    }
}

/// One finished call, with timing for the transcript.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub name: String,
    pub arguments: Map<String, Json>,
    pub output: ToolOutput,
    pub duration_ms: f64,
}

/// All tools of an agent.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<dyn Tool>>,
    timeout: Option<Duration>,
    /// Sources whose tools may change, with the names of the tools each one registered.
    sources: Vec<(Arc<dyn ToolSource>, Vec<String>)>,
    /// Where the tools leave notices for the user (see `Notices`).
    notices: Notices,
    /// Where tools ask the agent's model for completions (see `sampling`).
    samples: SampleQueue,
}

impl ToolRegistry {
    /// `timeout` bounds every call. Tools with their own timeouts (MCP) should use a shorter one, so they
    /// cancel cleanly before the registry abandons the call.
    pub fn new(timeout: Duration) -> Self {
        ToolRegistry {
            tools: Vec::new(),
            timeout: Some(timeout),
            sources: Vec::new(),
            notices: Notices::default(),
            samples: SampleQueue::default(),
        }
    }

    /// The queue this registry's tools ask the model through: hand a clone to the tools that may ask
    /// (MCP servers' sampling), and answer what it holds while calls run (the agent loop does).
    pub fn samples(&self) -> SampleQueue {
        self.samples.clone()
    }

    /// The queue this registry's tools report notices to: hand a clone to each tool or source when
    /// building it, and drain it after `refresh` and `dispatch`.
    pub fn notices(&self) -> Notices {
        self.notices.clone()
    }

    /// Registers a source's tools and remembers the source, so `refresh` can follow its changes.
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) -> anyhow::Result<()> {
        let tools = source.tools();
        let names = tools.iter().map(|t| t.name().to_string()).collect();
        for tool in tools {
            self.register(tool)?;
        }
        self.sources.push((source, names));
        Ok(())
    }

    /// Replaces the tools of every source whose list changed; returns one note per tool that could not
    /// be taken in (its name is already used by another tool).
    pub fn refresh(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for index in 0..self.sources.len() {
            let Some(fresh) = self.sources[index].0.changed_tools() else {
                continue;
            };
            let old = std::mem::take(&mut self.sources[index].1);
            self.tools
                .retain(|t| !old.iter().any(|name| name == t.name()));
            for tool in fresh {
                let name = tool.name().to_string();
                match self.register(tool) {
                    Ok(()) => self.sources[index].1.push(name),
                    Err(e) => notes.push(format!("{e:#}")),
                }
            }
        }
        notes
    }

    /// Adds a tool; a second tool with the same name is refused (the model could not tell them apart).
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> anyhow::Result<()> {
        if self.tools.iter().any(|t| t.name() == tool.name()) {
            anyhow::bail!(
                "two tools are named {:?}; rename one (MCP servers: use a prefix)",
                tool.name()
            );
        }
        self.tools.push(tool);
        Ok(())
    }

    /// The schemas as the chat template receives them (`{"type": "function", "function": {...}}`).
    pub fn schemas(&self) -> Vec<Json> {
        self.tools
            .iter()
            .map(|t| {
                serde_json::json!({"type": "function", "function": {
                    "name": t.name(), "description": t.description(), "parameters": t.parameters()}})
            })
            .collect()
    }

    /// Runs the calls concurrently and returns their records in call order.
    pub fn dispatch(&self, calls: &[(String, Map<String, Json>)]) -> Vec<CallRecord> {
        self.dispatch_cancellable(calls, &Cancel::default())
    }

    /// Runs the calls concurrently, each watching `cancel` (see `Tool::call_cancellable`), and returns
    /// their records in call order.
    pub fn dispatch_cancellable(
        &self,
        calls: &[(String, Map<String, Json>)],
        cancel: &Cancel,
    ) -> Vec<CallRecord> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = calls
                .iter()
                .map(|(name, arguments)| {
                    scope.spawn(move || self.call_one(name, arguments, cancel))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("tool threads catch their panics"))
                .collect()
        })
    }

    fn call_one(&self, name: &str, arguments: &Map<String, Json>, cancel: &Cancel) -> CallRecord {
        let start = Instant::now();
        let output = match self.tools.iter().find(|t| t.name() == name) {
            None => {
                let known: Vec<&str> = self.tools.iter().map(|t| t.name()).collect();
                ToolOutput::error(format!(
                    "Error: there is no tool named {name:?}. Available tools: {}.",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
            Some(tool) => self.call_with_timeout(tool.clone(), arguments.clone(), cancel.clone()),
        };
        CallRecord {
            name: name.to_string(),
            arguments: arguments.clone(),
            output,
            duration_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// Runs the tool on its own thread so a hung call cannot hold the agent past the timeout.
    fn call_with_timeout(
        &self,
        tool: Arc<dyn Tool>,
        arguments: Map<String, Json>,
        cancel: Cancel,
    ) -> ToolOutput {
        let (sender, receiver) = std::sync::mpsc::channel();
        let name = tool.name().to_string();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tool.call_cancellable(&arguments, &cancel)
            }));
            let _ = sender.send(result);
        });
        let received = match self.timeout {
            Some(timeout) => receiver.recv_timeout(timeout).map_err(|_| ()),
            None => receiver.recv().map_err(|_| ()),
        };
        match received {
            Ok(Ok(output)) => output,
            Ok(Err(_)) => ToolOutput::error(format!(
                "Error: the tool {name} crashed while running this call."
            )),
            Err(()) => ToolOutput::error(format!(
                "Error: the tool {name} did not answer within {:.0} s and the call was abandoned.",
                self.timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
            )),
        }
    }
}
