//! Answers to a server's request for input (elicitation). Where a person is there to ask (`chat` on a
//! terminal: a [`Person`]), they answer, form or URL; otherwise the agent file's `elicitation:` does
//! (decline by default; cancel; or accept with fixed content), at once, so a tool call never waits on
//! a person who is not there. Form content is sent only when it matches the request's schema. The
//! notice says what was asked and what was answered, never the content (it may hold secrets).

use crate::config::{ElicitationChoice, ElicitationSpec};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// A server's request for input, as a front end shows it to a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// The server's name in the agent file.
    pub server: String,
    /// What the server says it needs (hostile text: show it escaped).
    pub message: String,
    pub kind: QuestionKind,
}

/// What kind of answer a [`Question`] wants.
#[derive(Debug, Clone, PartialEq)]
pub enum QuestionKind {
    /// Values for the properties of `schema` (a flat JSON Schema object, as the MCP spec restricts it).
    Form { schema: Json },
    /// The person opens `url` themselves (a sign-in, a payment) and says whether they did.
    Url { url: String },
}

/// A person's answer to a [`Question`].
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Accepted: the form's values (empty for a URL question).
    Accept(Map<String, Json>),
    Decline,
    Cancel,
}

/// Asks a person (`chat` on a terminal). Called on a blocking thread, one question at a time per
/// caller's choosing, and may take as long as the person does; it should give up with
/// [`Answer::Cancel`] when the turn that asked is over.
pub type Person = Arc<dyn Fn(&Question) -> Answer + Send + Sync>;

/// `request` as a question for a person; `None` for a kind of request this client does not know.
pub(super) fn question(server: &str, request: &ElicitRequestParams) -> Option<Question> {
    let (message, kind) = match request {
        ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } => (
            message,
            QuestionKind::Form {
                schema: serde_json::to_value(requested_schema).ok()?,
            },
        ),
        ElicitRequestParams::UrlElicitationParams { message, url, .. } => {
            (message, QuestionKind::Url { url: url.clone() })
        }
        _ => return None,
    };
    Some(Question {
        server: server.to_string(),
        message: message.clone(),
        kind,
    })
}

/// The person's `answer` to `question` as the server's result, and the notice telling what happened
/// (never the content). Form content that does not match the schema is declined.
pub(super) fn answered(question: &Question, answer: Answer) -> (ElicitResult, String) {
    let asked = &question.message;
    match (answer, &question.kind) {
        (Answer::Decline, _) => (
            ElicitResult::new(ElicitationAction::Decline),
            format!("asked for input, you declined: {asked}"),
        ),
        (Answer::Cancel, _) => (
            ElicitResult::new(ElicitationAction::Cancel),
            format!("asked for input, cancelled: {asked}"),
        ),
        (Answer::Accept(_), QuestionKind::Url { url }) => (
            ElicitResult::new(ElicitationAction::Accept),
            format!("asked you to open a URL, you accepted: {asked} ({url})"),
        ),
        (Answer::Accept(content), QuestionKind::Form { schema }) => {
            let content = Json::Object(content);
            match mismatch(schema, &content) {
                Some(problems) => (
                    ElicitResult::new(ElicitationAction::Decline),
                    format!(
                        "asked for input, declined: your answer does not match the requested schema                          ({problems}): {asked}"
                    ),
                ),
                None => (
                    ElicitResult::new(ElicitationAction::Accept).with_content(content),
                    format!("asked for input, you answered: {asked}"),
                ),
            }
        }
    }
}

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
