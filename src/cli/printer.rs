//! How an agent's run looks on the terminal: thinking dimmed, answers streamed, tool calls and their
//! results coloured (plain when piped), notices in bold. Every text shown passes `printable` first:
//! tool results, server notices and the model's words (which may echo a fetched page) are hostile and
//! must not drive the terminal.

use qwen3_agent::agent::AgentEvent;
use qwen3_agent::chat::ParseEvent;
use std::borrow::Cow;
use std::io::{IsTerminal, Write};

/// `text` with its control characters other than newline and tab shown escaped (`\u{1b}`), so an
/// escape sequence in hostile text cannot move the cursor, rewrite what was printed, set the window
/// title or reach the clipboard (OSC 52). C1 controls count: some terminals take U+009B as CSI.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// Streams events to the terminal: thinking dimmed, tool activity coloured (plain when piped). A
/// buffered printer keeps what it would show until `take` (`run` with several tasks shows each run
/// whole when it ends, never interleaved).
pub struct Printer {
    enabled: bool,
    color: bool,
    in_reasoning: bool,
    buffer: Option<String>,
}

/// Tool results longer than this are shortened on screen (the model and transcript get them whole).
const DISPLAY_CHARS: usize = 600;

impl Printer {
    pub fn new(enabled: bool) -> Self {
        Printer {
            enabled,
            color: std::io::stdout().is_terminal(),
            in_reasoning: false,
            buffer: None,
        }
    }

    /// An enabled printer that keeps its output for `take` instead of writing it.
    pub fn buffered() -> Self {
        Printer {
            buffer: Some(String::new()),
            ..Printer::new(true)
        }
    }

    /// What a buffered printer kept since the last `take`, ended by a newline as `end` would.
    pub fn take(&mut self) -> String {
        let mut shown = self.buffer.as_mut().map(std::mem::take).unwrap_or_default();
        if !shown.ends_with('\n') {
            shown.push('\n');
        }
        shown
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
        let shown = match event {
            AgentEvent::Stream(ParseEvent::ReasoningDelta(d)) => {
                self.in_reasoning = true;
                self.paint("2", &printable(d))
            }
            AgentEvent::Stream(ParseEvent::ContentDelta(d)) => {
                let newline = if std::mem::take(&mut self.in_reasoning) {
                    "\n"
                } else {
                    ""
                };
                format!("{newline}{}", printable(d))
            }
            AgentEvent::Stream(ParseEvent::ToolCall(call)) => format!(
                "\n{}\n",
                self.paint(
                    "36",
                    &printable(&format!(
                        "→ {}({})",
                        call.name,
                        serde_json::Value::Object(call.arguments.clone())
                    ))
                )
            ),
            AgentEvent::Stream(ParseEvent::Error(e)) => {
                format!("\n{}\n", self.paint("31", &printable(&format!("✗ {e}"))))
            }
            AgentEvent::ToolResult { record, .. } => {
                let code = if record.output.is_error { "31" } else { "33" };
                format!(
                    "{}\n",
                    self.paint(
                        code,
                        &printable(&format!(
                            "← {}: {} ({:.0} ms)",
                            record.name,
                            shortened(&record.output.text),
                            record.duration_ms
                        ))
                    )
                )
            }
            AgentEvent::Sampling { ask, outcome } => {
                let said = match outcome {
                    Ok(response) => shortened(&response.output.content),
                    Err(error) => format!("failed: {error}"),
                };
                format!(
                    "{}\n",
                    self.paint(
                        "2",
                        &printable(&format!("⇄ the model answered {}: {said}", ask.source))
                    )
                )
            }
            AgentEvent::ModelCall { .. } => return,
            AgentEvent::Notice(text) => {
                format!(
                    "\n{}\n",
                    self.paint("1", &printable(&format!("note: {text}")))
                )
            }
        };
        match &mut self.buffer {
            Some(buffer) => buffer.push_str(&shown),
            None => {
                let write = || {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(shown.as_bytes());
                    let _ = out.flush();
                };
                if matches!(event, AgentEvent::Notice(_)) {
                    super::progress::above_bars(write);
                } else {
                    write();
                }
            }
        }
    }

    pub fn end(&self) {
        if self.enabled && self.buffer.is_none() {
            println!();
        }
    }
}

/// `text` cut to `DISPLAY_CHARS` characters, with " …" when it was longer.
fn shortened(text: &str) -> String {
    let mut shown: String = text.chars().take(DISPLAY_CHARS).collect();
    if text.chars().count() > DISPLAY_CHARS {
        shown.push_str(" …");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let hostile = "ok\x1b]52;c;ZXZpbA==\x07 \x1b[2J\u{9b}31m\rover\x7f";
        let shown = printable(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert_eq!(
            shown,
            "ok\\u{1b}]52;c;ZXZpbA==\\u{7} \\u{1b}[2J\\u{9b}31m\\u{d}over\\u{7f}"
        );
    }

    #[test]
    fn plain_text_keeps_its_lines_and_tabs() {
        let text = "a\tb\nc — ü";
        assert_eq!(printable(text), text);
    }
}
