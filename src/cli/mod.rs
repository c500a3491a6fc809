//! Command-line interface: one subcommand per user task; each lives in its own file.

mod chat;
mod eval;
mod inspect;
mod model_cmds;
mod progress;
mod python;
mod run;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "qwen3-agent",
    version,
    about = "Run Qwen3 agents locally: chat template, AWQ engine, tools"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run::RunArgs),
    Chat(chat::ChatArgs),
    Tools(run::ToolsArgs),
    Render(inspect::RenderArgs),
    Parse(inspect::ParseArgs),
    Logits(model_cmds::LogitsArgs),
    Generate(model_cmds::GenerateArgs),
    Synth(model_cmds::SynthArgs),
    Quantize(model_cmds::QuantizeArgs),
    Bench(model_cmds::BenchArgs),
    Setup(python::SetupArgs),
    Python(python::PythonArgs),
    Eval(eval::EvalArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    let result = dispatch(cli);
    qwen3_agent::tools::mcp::kill_all_servers();
    result
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::chat(args),
        Command::Tools(args) => run::tools(args),
        Command::Render(args) => inspect::render(args),
        Command::Parse(args) => inspect::parse(args),
        Command::Logits(args) => model_cmds::logits(args),
        Command::Generate(args) => model_cmds::generate(args),
        Command::Synth(args) => model_cmds::synth(args),
        Command::Quantize(args) => model_cmds::quantize(args),
        Command::Bench(args) => model_cmds::bench(args),
        Command::Setup(args) => python::setup(args),
        Command::Python(args) => python::python(args),
        Command::Eval(args) => eval::eval(args),
    }
}
