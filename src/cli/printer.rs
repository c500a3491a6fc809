//! How an agent's run looks on the terminal: thinking dimmed, answers streamed, tool calls and their
//! results coloured (plain when piped), notices in bold.

use qwen3_agent::agent::AgentEvent;
use qwen3_agent::chat::ParseEvent;
use std::io::{IsTerminal, Write};

/// Streams events to the terminal: thinking dimmed, tool activity coloured (plain when piped).
pub struct Printer {
    enabled: bool,
    color: bool,
    in_reasoning: bool,
}

/// Tool results longer than this are shortened on screen (the model and transcript get them whole).
const DISPLAY_CHARS: usize = 600;

impl Printer {
    pub fn new(enabled: bool) -> Self {
        Printer {
            enabled,
            color: std::io::stdout().is_terminal(),
            in_reasoning: false,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn show(&mut self, event: &AgentEvent) {
        if !self.enabled {
            if let AgentEvent::Notice(text) = event {
                super::assembly::print_notice(text);
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = match event {
            AgentEvent::Stream(ParseEvent::ReasoningDelta(d)) => {
                self.in_reasoning = true;
                write!(out, "{}", self.paint("2", d))
            }
            AgentEvent::Stream(ParseEvent::ContentDelta(d)) => {
                if std::mem::take(&mut self.in_reasoning) {
                    let _ = writeln!(out);
                }
                write!(out, "{d}")
            }
            AgentEvent::Stream(ParseEvent::ToolCall(call)) => writeln!(
                out,
                "\n{}",
                self.paint(
                    "36",
                    &format!(
                        "→ {}({})",
                        call.name,
                        serde_json::Value::Object(call.arguments.clone())
                    )
                )
            ),
            AgentEvent::Stream(ParseEvent::Error(e)) => {
                writeln!(out, "\n{}", self.paint("31", &format!("✗ {e}")))
            }
            AgentEvent::ToolResult { record, .. } => {
                let text = &record.output.text;
                let shown: String = text.chars().take(DISPLAY_CHARS).collect();
                let more = if text.chars().count() > DISPLAY_CHARS {
                    " …"
                } else {
                    ""
                };
                let code = if record.output.is_error { "31" } else { "33" };
                writeln!(
                    out,
                    "{}",
                    self.paint(
                        code,
                        &format!(
                            "← {}: {shown}{more} ({:.0} ms)",
                            record.name, record.duration_ms
                        )
                    )
                )
            }
            AgentEvent::ModelCall { .. } => Ok(()),
            AgentEvent::Notice(text) => {
                writeln!(out, "\n{}", self.paint("1", &format!("note: {text}")))
            }
        };
        let _ = out.flush();
    }

    pub fn end(&self) {
        if self.enabled {
            println!();
        }
    }
}
