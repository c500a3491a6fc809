//! `render` and `parse`: show exactly what the model reads and how its output is understood.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use qwen3_agent::chat::{ChatTemplate, FinishReason, OutputParser, RenderRequest, Tokenizer};
use serde_json::Value as Json;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Print the prompt the chat template makes of a request (JSON on stdin).
///
/// The request is `{"messages": [...], "tools": [...], "enable_thinking": bool,
/// "add_generation_prompt": bool, ...}`; keys other than these become template variables.
#[derive(Args)]
pub struct RenderArgs {
    /// Directory holding tokenizer.json and tokenizer_config.json (or chat_template.jinja).
    #[arg(long)]
    model: PathBuf,
    /// Print the token ids as a JSON array instead of the text.
    #[arg(long)]
    ids: bool,
}

pub fn render(args: RenderArgs) -> Result<()> {
    let request = read_render_request()?;
    let template = ChatTemplate::from_model_dir(&args.model)?;
    let text = template.render(&request)?;
    let mut stdout = std::io::stdout().lock();
    if args.ids {
        let ids = Tokenizer::from_model_dir(&args.model)?.encode(&text)?;
        writeln!(stdout, "{}", serde_json::to_string(&ids)?)?;
    } else {
        stdout.write_all(text.as_bytes())?;
    }
    Ok(())
}

fn read_render_request() -> Result<RenderRequest> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the request from stdin")?;
    let request: Json = serde_json::from_str(&input).context(
        "stdin must be a JSON object like {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
    )?;
    RenderRequest::from_json(request)
}

#[derive(Clone, Copy, ValueEnum)]
enum Finish {
    Stop,
    Length,
}

/// Parse raw model output (stdin) into reasoning, content, tool calls and errors, printed as JSON.
#[derive(Args)]
pub struct ParseArgs {
    /// The prompt disabled thinking: all output is content.
    #[arg(long)]
    no_thinking: bool,
    /// How generation ended: `length` means a cut-off, so an unfinished tool call never runs.
    #[arg(long, value_enum, default_value = "stop")]
    finish: Finish,
    /// Feed the streaming parser N characters at a time (default: all at once).
    #[arg(long)]
    chunk: Option<usize>,
}

pub fn parse(args: ParseArgs) -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading model output from stdin")?;
    let mut parser = OutputParser::new(!args.no_thinking);
    match args.chunk {
        Some(0) => anyhow::bail!("--chunk must be at least 1"),
        Some(n) => {
            let chars: Vec<char> = input.chars().collect();
            for piece in chars.chunks(n) {
                parser.feed(&piece.iter().collect::<String>());
            }
        }
        None => {
            parser.feed(&input);
        }
    }
    parser.finish(match args.finish {
        Finish::Stop => FinishReason::Stop,
        Finish::Length => FinishReason::Length,
    });
    println!("{}", serde_json::to_string(parser.output())?);
    Ok(())
}
