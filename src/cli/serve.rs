//! `serve`: the OpenAI-compatible server (the library's `serve` module) on a model or an agent file.

use super::assembly::{EngineFlags, assemble_options, print_notice};
use anyhow::{Context, Result};
use clap::Args;
use qwen3_agent::config::check;
use qwen3_agent::serve::{ServeOptions, serve, served_agent};
use std::net::IpAddr;
use std::path::PathBuf;

/// Serve a model on an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models, /health, /metrics).
#[derive(Args)]
pub struct ServeArgs {
    /// A model directory or hub id, or an agent file (.yaml) whose `model` and `generate` are served.
    model: PathBuf,
    /// Address to bind; anything but loopback needs --api-key-env.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The environment variable holding the API key clients must send as `Authorization: Bearer KEY`.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
    /// Requests that may wait while others are answered; more get 503 with Retry-After.
    #[arg(long, default_value_t = 64, value_parser = check::flag(|n| check::count(n, 1 << 16)))]
    queue: usize,
    /// Requests answered at once (default 4). A local model on the CPU runs them batched (each pass
    /// reads the weights once for all of them); a GPU model or a scripted backend answers one at a
    /// time.
    #[arg(long, value_parser = check::flag(|n| check::count(n, 256)))]
    parallel: Option<usize>,
    /// The model id clients send and /v1/models lists (default: the model's directory name or hub id,
    /// or the agent's name).
    #[arg(long, value_name = "NAME")]
    served_model_name: Option<String>,
    #[command(flatten)]
    engine: EngineFlags,
}

pub fn serve_command(args: ServeArgs) -> Result<()> {
    let api_key = args
        .api_key_env
        .as_deref()
        .map(|var| {
            std::env::var(var)
                .ok()
                .filter(|key| !key.is_empty())
                .with_context(|| {
                    format!(
                        "--api-key-env names {var}, which is not set or empty: export the key in it"
                    )
                })
        })
        .transpose()?;
    let mut definition = served_agent(&args.model)?;
    args.engine.apply(&mut definition);
    let options = ServeOptions {
        host: args.host,
        port: args.port,
        api_key,
        queue: args.queue,
        parallel: args.parallel,
        model_name: args.served_model_name,
    };
    serve(
        definition,
        options,
        assemble_options(print_notice)?,
        |address| {
            eprintln!("serving on http://{address}/v1 (OpenAI-compatible); Ctrl-C stops");
        },
    )
}
