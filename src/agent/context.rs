//! Keeping the prompt within the context: old tool results are cut to their head and tail, then the
//! oldest turns are dropped, each step announced; a prompt that cannot fit even then is an error that
//! says which part is too big and what to change.

use super::{Agent, AgentEvent};
use crate::backend::{BackendRequest, CallParsing, ContextUse};
use crate::chat::Message;
use crate::engine::SamplingParams;
use anyhow::{Result, bail};

impl Agent {
    /// Keeps the prompt within `context − max_new_tokens`: first old tool results are cut to their head
    /// and tail (oldest first), then the oldest turns are dropped. Each step is announced. Backends that
    /// do not measure prompts (remote servers) are left to manage their own context.
    pub(super) fn fit_context(
        &self,
        messages: &mut Vec<Message>,
        tools: &[serde_json::Value],
        thinking: bool,
        max_new_tokens: usize,
        on_event: &mut dyn FnMut(AgentEvent),
    ) -> Result<()> {
        let try_measure = |messages: &[Message]| -> Result<Option<ContextUse>> {
            self.backend.measure(&BackendRequest {
                messages,
                tools,
                thinking,
                sampling: SamplingParams::greedy(),
                max_new_tokens,
                stop: &[],
                interrupt: &self.interrupt,
                calls: CallParsing::Calls,
                format: None,
                logprobs: None,
            })
        };
        let Some(mut usage) = try_measure(messages)? else {
            return Ok(());
        };
        let measure = |messages: &[Message]| -> Result<ContextUse> {
            try_measure(messages)?.ok_or_else(|| {
                anyhow::anyhow!("the backend measured the prompt once, then stopped measuring it")
            })
        };
        let fits = |u: &ContextUse| u.prompt_tokens + max_new_tokens <= u.context_length;
        if fits(&usage) {
            return Ok(());
        }
        if max_new_tokens >= usage.context_length {
            bail!(
                "generate.max_new_tokens ({max_new_tokens}) leaves no room for a prompt in model.context_length \
                 ({}): lower max_new_tokens or raise context_length",
                usage.context_length
            );
        }
        for i in 0..messages.len() {
            if let Message::Tool { content, .. } = &mut messages[i]
                && let Some(cut) = cut_middle(content)
            {
                *content = cut;
                on_event(AgentEvent::Notice(
                    "context: an old tool result was cut to its head and tail to fit context_length",
                ));
                usage = measure(messages)?;
                if fits(&usage) {
                    return Ok(());
                }
            }
        }
        loop {
            let first = messages
                .iter()
                .position(|m| !matches!(m, Message::System { .. }))
                .unwrap_or(messages.len());
            let last_user = messages
                .iter()
                .rposition(|m| matches!(m, Message::User { .. }));
            let next_turn = messages
                .iter()
                .enumerate()
                .skip(first + 1)
                .find(|(_, m)| matches!(m, Message::User { .. }))
                .map(|(p, _)| p)
                .filter(|&p| Some(p) <= last_user);
            let Some(end) = next_turn else {
                return Err(Self::cannot_fit(
                    messages,
                    &usage,
                    first,
                    tools.len(),
                    max_new_tokens,
                    &measure,
                ));
            };
            messages.drain(first..end);
            on_event(AgentEvent::Notice(
                "context: the oldest turn was dropped to fit context_length",
            ));
            usage = measure(messages)?;
            if fits(&usage) {
                return Ok(());
            }
        }
    }

    /// The error for a prompt that is too long with every earlier turn dropped: names the context, the
    /// prompt's size and the share of the fixed part (system prompt and tool schemas), and what to change.
    fn cannot_fit(
        messages: &[Message],
        usage: &ContextUse,
        system_count: usize,
        tool_count: usize,
        max_new_tokens: usize,
        measure: &dyn Fn(&[Message]) -> Result<ContextUse>,
    ) -> anyhow::Error {
        let context_length = usage.context_length;
        // The template needs a user turn to render; an empty one adds only its own few tokens.
        let mut fixed_part = messages[..system_count].to_vec();
        fixed_part.push(Message::user(""));
        match measure(&fixed_part) {
            Ok(fixed) if fixed.prompt_tokens + max_new_tokens > context_length => anyhow::anyhow!(
                "the system prompt and the {tool_count} tool schemas alone take {} tokens, which with \
                 generate.max_new_tokens {max_new_tokens} exceeds model.context_length {context_length}: \
                 raise model.context_length, shorten the system prompt or offer fewer tools, or lower \
                 max_new_tokens",
                fixed.prompt_tokens
            ),
            Ok(fixed) => anyhow::anyhow!(
                "the prompt needs {} tokens (the system prompt and the {tool_count} tool schemas take {} of \
                 them), which with generate.max_new_tokens {max_new_tokens} exceeds model.context_length \
                 {context_length} even with every earlier turn dropped and old tool results cut: raise \
                 model.context_length, lower max_new_tokens, or shorten the latest message",
                usage.prompt_tokens,
                fixed.prompt_tokens
            ),
            Err(e) => e.context(format!(
                "the prompt needs {} tokens, which with generate.max_new_tokens {max_new_tokens} exceeds \
                 model.context_length {context_length}",
                usage.prompt_tokens
            )),
        }
    }
}

/// Characters of a cut tool result kept from its start and its end.
const KEEP_HEAD: usize = 300;
const KEEP_TAIL: usize = 100;
/// Results shorter than what is kept plus this are left alone: cutting them would save little.
const MIN_CUT: usize = 100;

/// The text shortened to its head and tail with a marker saying how much was cut; None if already short.
fn cut_middle(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < KEEP_HEAD + KEEP_TAIL + MIN_CUT {
        return None;
    }
    let cut = chars.len() - KEEP_HEAD - KEEP_TAIL;
    let head: String = chars[..KEEP_HEAD].iter().collect();
    let tail: String = chars[chars.len() - KEEP_TAIL..].iter().collect();
    Some(format!(
        "{head}\n[… {cut} characters cut to fit the context …]\n{tail}"
    ))
}
