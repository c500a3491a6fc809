//! The CLI's side of building an agent: tool files go to `qwen3-agent-output/` under the working
//! directory, the model's load is drawn as a progress bar (on a terminal only: indicatif hides it when
//! stderr is piped), and the servers starting and the notices are told on stderr.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qwen3_agent::agent::assemble::{AssembleEvent, AssembleOptions};
use std::sync::OnceLock;

/// Where tools put the files they reference (images, figures), under the working directory.
const OUTPUT_DIR: &str = "qwen3-agent-output";
/// Set (to anything) to see MCP servers' stderr lines as notices.
const FORWARD_STDERR: &str = "QWEN3_AGENT_MCP_STDERR";

/// Options for `qwen3_agent::agent::assemble`, with each notice handed to `on_notice`.
pub fn assemble_options(
    on_notice: impl Fn(&str) + Send + Sync + 'static,
) -> Result<AssembleOptions> {
    let output_dir = std::env::current_dir()
        .context("reading the working directory")?
        .join(OUTPUT_DIR);
    let bar = OnceLock::<ProgressBar>::new();
    let mut options = AssembleOptions::new(output_dir);
    options.forward_server_stderr = std::env::var_os(FORWARD_STDERR).is_some();
    Ok(options.with_events(move |event| match event {
        AssembleEvent::LoadingModel { dir, done, total } => {
            let bar = bar.get_or_init(|| {
                ProgressBar::new(total as u64)
                    .with_style(
                        ProgressStyle::with_template("loading {msg} [{bar:30}] {pos}/{len} layers")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    )
                    .with_message(dir.display().to_string())
            });
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done >= total {
                bar.finish_and_clear();
            }
        }
        AssembleEvent::StartingServers(names) => {
            eprintln!("starting MCP servers: {}", names.join(", "))
        }
        AssembleEvent::Notice(text) => on_notice(text),
    }))
}

/// A notice on stderr, as every command shows them.
pub fn print_notice(text: &str) {
    eprintln!("note: {text}");
}
