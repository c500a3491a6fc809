//! `chat`: an interactive conversation with an agent. History is kept between turns; `/think` and
//! `/no_think` in a message switch thinking for that turn; Ctrl-C stops the current answer, not the
//! program.

use super::run::{Printer, build_agent};
use anyhow::{Context, Result};
use clap::Args;
use qwen3_agent::chat::Message;
use qwen3_agent::config;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Talk to an agent interactively.
#[derive(Args)]
pub struct ChatArgs {
    /// The agent file (YAML).
    agent: PathBuf,
    /// Render prompts with thinking disabled.
    #[arg(long)]
    no_thinking: bool,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let mut definition = config::load_agent(&args.agent)?;
    if args.no_thinking {
        definition.agent.generate.thinking = Some(false);
    }
    let mut agent = build_agent(&definition)?;
    let interrupt = agent.interrupt_flag();
    ctrlc::set_handler(move || interrupt.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    eprintln!(
        "chatting with {} — /reset clears the history, /exit or Ctrl-D quits, Ctrl-C stops an answer",
        definition.agent.name
    );
    let mut history: Vec<Message> = Vec::new();
    let mut printer = Printer::new(true);
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("\n> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(Message::user(line));
        let result = agent.run(std::mem::take(&mut history), &mut |event| {
            printer.show(&event)
        })?;
        printer.end();
        history = result.messages;
    }
    Ok(())
}
