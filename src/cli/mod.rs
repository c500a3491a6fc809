//! Command-line interface: subcommands grouped by task, one file per group, plus what several share
//! (the terminal printer, agent assembly with progress, signal handling). The library does the work.

mod assembly;
mod bench_batch;
mod bench_speculation;
mod chat;
mod chat_elicit;
mod chat_input;
mod chat_prompts;
mod eval;
mod inspect;
mod mcp_auth;
mod model_cmds;
mod printer;
mod progress;
mod python;
mod run;
mod run_many;
mod serve;
mod signals;
mod workers;

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
    Serve(serve::ServeArgs),
    Mcp(mcp_auth::McpArgs),
}

pub fn run(cli: Cli) -> std::process::ExitCode {
    let result = dispatch(cli);
    qwen3_agent::tools::mcp::kill_all_servers();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<signals::StoppedBy>() {
            Some(stopped) => {
                eprintln!("{stopped}");
                stopped.0.exit_code().into()
            }
            None => {
                // An error may quote a server's reply or a tool's output.
                eprintln!("error: {}", printer::printable(&format!("{error:#}")));
                std::process::ExitCode::FAILURE
            }
        },
    }
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
        Command::Serve(args) => serve::serve_command(args),
        Command::Mcp(args) => mcp_auth::mcp(args),
    }
}
