//! Answers to a server's request for input (elicitation) when no one is asked: the agent file's
//! `elicitation:` (decline by default; cancel; or accept with fixed content, sent only when it matches
//! the request's schema). Answered at once, so a tool call never waits on a person who is not there.
//! The notice says what was asked and what was answered, never the content (it may hold secrets).

use crate::config::{ElicitationChoice, ElicitationSpec};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::Value as Json;

/// The answer to `request`, and the notice telling the user about it.
pub(super) fn answer(
    spec: &ElicitationSpec,
    request: &ElicitRequestParams,
) -> (ElicitResult, String) {
    let (asked, schema) = match request {
        ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } => (
            message.clone(),
            Some(serde_json::to_value(requested_schema).unwrap_or_default()),
        ),
        ElicitRequestParams::UrlElicitationParams { message, url, .. } => {
            (format!("{message} ({url})"), None)
        }
        _ => ("(a kind of request this client does not know)".into(), None),
    };
    let declined = |why: &str| {
        (
            ElicitResult::new(ElicitationAction::Decline),
            format!("asked for input, declined ({why}): {asked}"),
        )
    };
    match (spec.action, &spec.content, schema) {
        (ElicitationChoice::Decline, _, _) => declined(
            "no one can answer here; elicitation: in the agent file can give a fixed answer",
        ),
        (ElicitationChoice::Cancel, _, _) => (
            ElicitResult::new(ElicitationAction::Cancel),
            format!("asked for input, cancelled (elicitation: cancel): {asked}"),
        ),
        (ElicitationChoice::Accept, _, None) => {
            declined("only form requests can be answered with elicitation.content")
        }
        (ElicitationChoice::Accept, content, Some(schema)) => {
            let content = Json::Object(content.clone().unwrap_or_default());
            match mismatch(&schema, &content) {
                Some(problems) => declined(&format!(
                    "elicitation.content does not match the requested schema: {problems}"
                )),
                None => (
                    ElicitResult::new(ElicitationAction::Accept).with_content(content),
                    format!("asked for input, answered with elicitation.content: {asked}"),
                ),
            }
        }
    }
}

/// What is wrong with `content` against `schema` (paths and rules, not values), `None` when it fits.
fn mismatch(schema: &Json, content: &Json) -> Option<String> {
    let validator = match jsonschema::validator_for(schema) {
        Ok(validator) => validator,
        Err(e) => {
            return Some(format!(
                "the server's schema is not valid JSON Schema ({e})"
            ));
        }
    };
    let problems: Vec<String> = validator
        .iter_errors(content)
        .take(5)
        .map(|e| format!("{} at '{}'", e.kind().keyword(), e.instance_path()))
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}
