//! A server's `sampling/createMessage` answered by the agent's own model (the local engine or the
//! remote backend, whichever the agent uses). The request is checked and capped here — text only (the
//! model has no vision or hearing: images and audio are refused, as are tool use and tool results),
//! `maxTokens` capped by the server's `sampling_max_tokens`, `temperature` checked like a file's,
//! `includeContext` other than `none` answered as `none` (we share no other conversation) — then
//! queued for the agent (`tools::sampling`) and awaited, at most the server's call timeout.
//!
//! The 2026-07-28 spec deprecates sampling (rmcp marks it so); 2025-era servers use it, and 2026-07-28
//! ones may still ask within a call's input_required result (`client::answer_all`).
#![expect(deprecated, reason = "sampling is what 2025-era servers use")]

use crate::chat::Message;
use crate::config::{GenerateSpec, check_generate};
use crate::tools::sampling::{SampleAsk, SampleQueue};
use rmcp::model::{
    ContextInclusion, CreateMessageRequestParams, CreateMessageResult, ErrorData, SamplingMessage,
};
use serde_json::Value as Json;
use std::time::Duration;

/// Tokens a server's sampling request may generate when its entry sets no `sampling_max_tokens`.
pub const DEFAULT_MAX_TOKENS: usize = 1024;

/// The name the answers give as their model.
const MODEL: &str = "qwen3-agent";

/// Where one server's sampling requests go, and their limits.
pub(super) struct Sampler {
    pub queue: SampleQueue,
    /// `sampling_max_tokens`.
    pub max_tokens: usize,
    /// How long an answer is awaited (the server's call timeout).
    pub wait: Duration,
}

impl Sampler {
    /// The model's answer to `params` from `server`, or the error the server gets; `notice` tells the
    /// user what was asked and what happened.
    pub async fn answer(
        &self,
        server: &str,
        params: &CreateMessageRequestParams,
        notice: &(dyn Fn(&str) + Sync),
    ) -> Result<CreateMessageResult, ErrorData> {
        let (ask, note) = match ask(server, params, self.max_tokens) {
            Ok(asked) => asked,
            Err(refusal) => {
                notice(&format!("sampling refused: {}", refusal.message));
                return Err(refusal);
            }
        };
        notice(&format!(
            "asked the agent's model for a completion ({} messages, up to {} tokens){note}",
            ask.messages.len(),
            ask.max_tokens
        ));
        let answer = self.queue.ask(ask);
        let sampled = match tokio::time::timeout(self.wait, answer).await {
            Ok(Ok(Ok(sampled))) => sampled,
            Ok(Ok(Err(e))) => return Err(ErrorData::internal_error(e, None)),
            Ok(Err(_)) => {
                return Err(ErrorData::internal_error(
                    "the agent stopped before its model could answer",
                    None,
                ));
            }
            Err(_) => {
                return Err(ErrorData::internal_error(
                    format!(
                        "the agent's model did not answer within {:.0} s",
                        self.wait.as_secs_f64()
                    ),
                    None,
                ));
            }
        };
        let stop = if sampled.cut {
            CreateMessageResult::STOP_REASON_END_MAX_TOKEN
        } else {
            CreateMessageResult::STOP_REASON_END_TURN
        };
        Ok(
            CreateMessageResult::new(SamplingMessage::assistant_text(sampled.text), MODEL.into())
                .with_stop_reason(stop),
        )
    }
}

/// The request as the agent's model takes it, and a note for the user (an `includeContext` we did not
/// honour); or the refusal the server gets.
fn ask(
    server: &str,
    params: &CreateMessageRequestParams,
    cap: usize,
) -> Result<(SampleAsk, String), ErrorData> {
    let refuse = |why: String| Err(ErrorData::invalid_params(why, None));
    if params.tools.as_ref().is_some_and(|tools| !tools.is_empty()) {
        return refuse("this client does not offer tools to sampling requests".into());
    }
    if params.max_tokens == 0 {
        return refuse("maxTokens must be at least 1".into());
    }
    let spec = GenerateSpec {
        temperature: params.temperature,
        stop: params.stop_sequences.clone(),
        ..Default::default()
    };
    if let Err(problem) = check_generate(&spec, "sampling") {
        return refuse(problem.message);
    }
    let mut messages = Vec::new();
    for message in &params.messages {
        let shown = serde_json::to_value(message).unwrap_or_default();
        let blocks = match &shown["content"] {
            Json::Array(blocks) => blocks.clone(),
            block => vec![block.clone()],
        };
        let mut texts = Vec::new();
        for block in &blocks {
            match block["type"].as_str() {
                Some("text") => texts.push(block["text"].as_str().unwrap_or_default().to_string()),
                Some(kind @ ("image" | "audio")) => {
                    return refuse(format!(
                        "the agent's model reads text only, so {kind} content cannot be sampled; send \
                         text"
                    ));
                }
                other => {
                    return refuse(format!(
                        "this client samples text only, not {} content",
                        other.unwrap_or("unknown")
                    ));
                }
            }
        }
        let text = texts.join("\n");
        messages.push(match shown["role"].as_str() {
            Some("assistant") => Message::Assistant {
                content: text,
                reasoning_content: None,
                tool_calls: Vec::new(),
            },
            _ => Message::user(text),
        });
    }
    if messages.is_empty() {
        return refuse("the request has no messages".into());
    }
    let note = match params.include_context {
        Some(ContextInclusion::ThisServer | ContextInclusion::AllServers) => {
            "; includeContext answered as none: no other conversation is shared"
        }
        _ => "",
    };
    let asked = params.max_tokens as usize;
    let ask = SampleAsk {
        source: server.to_string(),
        system: params.system_prompt.clone(),
        messages,
        max_tokens: asked.min(cap),
        temperature: params.temperature,
        stop: params.stop_sequences.clone().unwrap_or_default(),
    };
    Ok((ask, note.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Json) -> CreateMessageRequestParams {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn text_is_taken_capped_and_images_refused() {
        let asked = params(serde_json::json!({
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "Hi"}},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}
            ],
            "systemPrompt": "Be brief.", "maxTokens": 5000, "temperature": 0.2,
            "stopSequences": ["END"], "includeContext": "thisServer"
        }));
        let (ask, note) = ask("srv", &asked, 1024).unwrap();
        assert_eq!(ask.max_tokens, 1024);
        assert_eq!(ask.system.as_deref(), Some("Be brief."));
        assert_eq!(ask.stop, ["END"]);
        assert_eq!(ask.temperature, Some(0.2));
        assert_eq!(ask.messages[0], Message::user("Hi"));
        assert!(
            matches!(&ask.messages[1], Message::Assistant { content, .. } if content == "Hello")
        );
        assert!(note.contains("includeContext answered as none"), "{note}");

        let image = params(serde_json::json!({
            "messages": [{"role": "user", "content": {"type": "image", "data": "AAAA", "mimeType": "image/png"}}],
            "maxTokens": 10
        }));
        let refusal = super::ask("srv", &image, 1024).err().unwrap();
        assert!(
            refusal
                .message
                .contains("reads text only, so image content"),
            "{refusal:?}"
        );

        let hot = params(serde_json::json!({
            "messages": [{"role": "user", "content": {"type": "text", "text": "x"}}],
            "maxTokens": 10, "temperature": -1.0
        }));
        let refusal = super::ask("srv", &hot, 1024).err().unwrap();
        assert!(
            refusal.message.contains("sampling.temperature"),
            "{refusal:?}"
        );
    }
}
