//! The CLI's side of building an agent: tool files go to `qwen3-agent-output/` under the working
//! directory (which MCP servers are also given as their first root), the model's download, load and
//! long prefills, and MCP servers' progress, are drawn as `progress`'s bars, and the servers starting
//! and the notices are told on stderr.

use super::progress;
use anyhow::{Context, Result};
use clap::Args;
use qwen3_agent::agent::assemble::{AssembleEvent, AssembleOptions};
use qwen3_agent::config::ResolvedAgent;
use qwen3_agent::engine::Speculation;
use qwen3_agent::model::KvCacheFormat;
use std::sync::Mutex;

/// Where tools put the files they reference (images, figures), under the working directory.
const OUTPUT_DIR: &str = "qwen3-agent-output";
/// Set (to anything) to see MCP servers' stderr lines as notices.
const FORWARD_STDERR: &str = "QWEN3_AGENT_MCP_STDERR";

/// Options for `qwen3_agent::agent::assemble`, with each notice handed to `on_notice`.
pub fn assemble_options(
    on_notice: impl Fn(&str) + Send + Sync + 'static,
) -> Result<AssembleOptions> {
    let working_dir = std::env::current_dir().context("reading the working directory")?;
    let output_dir = working_dir.join(OUTPUT_DIR);
    // The load's bar, until its last step (dropping it clears it).
    let loading = Mutex::new(None);
    let downloading = Mutex::new(progress::downloading());
    let mut options = AssembleOptions::new(output_dir);
    options.forward_server_stderr = std::env::var_os(FORWARD_STDERR).is_some();
    options.prefill_progress = Some(progress::prefilling);
    options.working_dir = Some(working_dir);
    options.mcp_progress = Some(progress::mcp_calls());
    Ok(options.with_events(move |event| match event {
        AssembleEvent::Downloading(report) => {
            (downloading.lock().unwrap_or_else(|e| e.into_inner()))(report)
        }
        AssembleEvent::LoadingModel { dir, done, total } => {
            let mut bar = loading.lock().unwrap_or_else(|e| e.into_inner());
            bar.get_or_insert_with(|| progress::loading(dir))(done, total);
            if done >= total {
                *bar = None;
            }
        }
        AssembleEvent::StartingServers(names) => {
            eprintln!("starting MCP servers: {}", names.join(", "))
        }
        AssembleEvent::Notice(text) => on_notice(text),
    }))
}

/// A notice on stderr, as every command shows them (above any MCP call's bar).
pub fn print_notice(text: &str) {
    progress::above_bars(|| eprintln!("note: {}", super::printer::printable(text)));
}

/// Flags over the agent file's local engine settings, shared by `run`, `chat`, `eval` and `serve`.
#[derive(Args)]
pub struct EngineFlags {
    /// Speculative decoding on the local engine (over model.speculation): off, or prompt_lookup
    /// (drafts looked up in the prompt and output, verified several per forward pass). Default: off
    /// (`Speculation::default_for`, measured per device).
    #[arg(long, value_enum)]
    speculation: Option<Speculation>,
    /// The KV cache's format on the GPU (over model.kv_cache): f16, or fp8 (half the memory per
    /// position; see BENCHMARKS.md for its error).
    #[arg(long, value_enum)]
    kv_cache: Option<KvCacheFormat>,
}

impl EngineFlags {
    /// Lays the flags given over `definition`'s model settings.
    pub fn apply(&self, definition: &mut ResolvedAgent) {
        if let Some(speculation) = self.speculation {
            definition.agent.model.speculation = Some(speculation);
        }
        if let Some(format) = self.kv_cache {
            definition.agent.model.kv_cache = format;
        }
    }
}
