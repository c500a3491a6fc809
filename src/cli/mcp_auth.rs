//! `mcp login SERVER AGENT.yaml` / `mcp logout SERVER AGENT.yaml`: OAuth sign-in to one of an agent's
//! Streamable HTTP servers (see `tools::mcp::oauth`). The authorization URL is printed for the person
//! to open (and handed to the desktop's opener where there is one); tokens are never shown.

use super::printer::printable;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use qwen3_agent::config;
use qwen3_agent::tools::mcp::oauth;
use std::path::PathBuf;

/// Sign in to or out of an agent's MCP servers that use OAuth.
#[derive(Args)]
pub struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(Subcommand)]
enum McpCommand {
    /// Sign in to SERVER (a Streamable HTTP server of the agent file) and keep its tokens.
    Login(ServerArgs),
    /// Forget SERVER's tokens.
    Logout(ServerArgs),
}

#[derive(Args)]
struct ServerArgs {
    /// The server's name in the agent file's mcpServers (or its mcp_config).
    server: String,
    /// The agent file (YAML).
    agent: PathBuf,
}

pub fn mcp(args: McpArgs) -> Result<()> {
    match args.command {
        McpCommand::Login(server) => {
            let url = server_url(&server)?;
            oauth::login(&url, &|authorize: &str| {
                eprintln!(
                    "open this URL in a browser to sign in to {}:\n{}",
                    server.server,
                    printable(authorize)
                );
                open_in_browser(authorize);
            })
            .with_context(|| format!("signing in to {}", server.server))?;
            eprintln!(
                "signed in to {}; its tokens are kept for later runs",
                server.server
            );
        }
        McpCommand::Logout(server) => {
            if oauth::logout(&server_url(&server)?)? {
                eprintln!("signed out of {}", server.server);
            } else {
                eprintln!("{} had no saved sign-in", server.server);
            }
        }
    }
    Ok(())
}

/// The URL of the agent's server `args.server`, `${VAR}`s expanded.
fn server_url(args: &ServerArgs) -> Result<String> {
    let agent = config::load_agent(&args.agent)?;
    let servers = config::mcp_servers(&agent)?;
    let Some(spec) = servers.get(&args.server) else {
        let names: Vec<&str> = servers.keys().map(String::as_str).collect();
        bail!(
            "{} has no MCP server {:?}; its servers: {}",
            args.agent.display(),
            args.server,
            names.join(", ")
        );
    };
    let Some(url) = &spec.url else {
        bail!(
            "{} is a stdio server; OAuth sign-in is for Streamable HTTP servers (url:)",
            args.server
        );
    };
    config::expand_env(url, |name| std::env::var(name).ok())
}

/// Hands `url` to the desktop's opener when one is installed and a display is there; the URL is
/// printed either way.
fn open_in_browser(url: &str) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if desktop {
        let _ = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}
