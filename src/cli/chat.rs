//! `chat`: an interactive conversation with an agent. History is kept between turns, and kept when a
//! turn fails (a server down): `/retry` answers the last message again. `/prompts` lists the MCP
//! servers' prompts; `/prompt NAME key=value …` adds one's messages to the conversation and answers. `/think` and `/no_think` in a
//! message switch thinking for that turn; Ctrl-C stops the current answer, and at the prompt (or a
//! second time before the answer has stopped) ends the program, as SIGTERM does. On a terminal, an MCP
//! server's request for input is asked of the person (see `chat_elicit`) instead of being answered by
//! the agent file's `elicitation:`.

use super::assembly::{EngineFlags, assemble_options, print_notice};
use super::chat_elicit;
use super::chat_input::Input;
use super::chat_prompts;
use super::printer::{Printer, printable};
use super::signals::{Mode, Signals};
use anyhow::{Context, Result};
use clap::Args;
use qwen3_agent::agent::assemble::build_agent;
use qwen3_agent::chat::Message;
use qwen3_agent::config;
use std::io::{IsTerminal, Write};
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
    #[command(flatten)]
    engine: EngineFlags,
}

pub fn chat(args: ChatArgs) -> Result<()> {
    let signals = Signals::install(Mode::Chat)?;
    let mut definition = config::load_agent(&args.agent)?;
    if args.no_thinking {
        definition.agent.generate.thinking = Some(false);
    }
    args.engine.apply(&mut definition);
    let input = Input::start().context("starting chat's input thread")?;
    let mut options = assemble_options(print_notice)?;
    if std::io::stdin().is_terminal() {
        options.person = Some(chat_elicit::person(input.clone()));
    }
    let mut agent = build_agent(&definition, &options)?;
    let interrupt = agent.interrupt_flag();
    signals.watch(interrupt.clone());
    eprintln!(
        "chatting with {} — /reset clears the history, /retry answers the last message again, /prompts \
         lists MCP prompts and /prompt NAME key=value … runs one, /exit or Ctrl-D quits, Ctrl-C stops an \
         answer",
        definition.agent.name
    );
    let mut history: Vec<Message> = Vec::new();
    let mut printer = Printer::new(true);
    loop {
        print!("\n> ");
        std::io::stdout().flush()?;
        let Some(line) = input.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                eprintln!("(history cleared)");
                continue;
            }
            "/retry" if !awaits_answer(&history) => {
                eprintln!("(nothing to retry: the last message was answered)");
                continue;
            }
            "/retry" => {}
            "/prompts" => {
                println!("{}", chat_prompts::listing(&agent.prompts()));
                continue;
            }
            command if command == "/prompt" || command.starts_with("/prompt ") => {
                let messages = chat_prompts::parse(&command["/prompt".len()..]).and_then(|call| {
                    agent.prompt_messages(call.server.as_deref(), &call.name, &call.arguments)
                });
                match messages {
                    Ok(messages) => {
                        for message in messages.iter().map(Message::to_json) {
                            let text = |key: &str| message[key].as_str().unwrap_or_default();
                            println!("[{}] {}", text("role"), printable(text("content")));
                        }
                        history.extend(messages);
                    }
                    Err(e) => {
                        eprintln!("error: {}", printable(&format!("{e:#}")));
                        continue;
                    }
                }
            }
            _ => history.push(Message::user(line)),
        }
        interrupt.store(false, Ordering::SeqCst);
        let outcome = signals.busy(|| {
            agent.run(std::mem::take(&mut history), &mut |event| {
                printer.show(&event)
            })
        });
        input.end_turn();
        printer.end();
        history = match outcome {
            Ok(result) => result.messages,
            Err(failure) => {
                eprintln!("error: {}", printable(&failure.to_string()));
                eprintln!("(the conversation is kept: /retry to try again)");
                failure.messages
            }
        };
    }
    Ok(())
}

/// Whether the history ends with something the model has not answered (a message, tool results).
fn awaits_answer(history: &[Message]) -> bool {
    !matches!(history.last(), None | Some(Message::Assistant { .. }))
}
