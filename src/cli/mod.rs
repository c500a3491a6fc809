//! Command-line interface: one subcommand per user task; each lives in its own file.

mod inspect;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "qwen3-agent", version, about = "Run Qwen3 agents locally: chat template, AWQ engine, tools")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Render(inspect::RenderArgs),
    Parse(inspect::ParseArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Render(args) => inspect::render(args),
        Command::Parse(args) => inspect::parse(args),
    }
}
