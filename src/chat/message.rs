//! The conversation model, serde-compatible with the OpenAI chat format so transcripts, the template and
//! HTTP backends all share one shape.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value as Json};

/// One chat message, tagged by `role` as in the OpenAI API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        /// The answer text, without any think block (the template must not see old thinking twice).
        #[serde(default, deserialize_with = "null_as_empty")]
        content: String,
        /// The thinking of this turn, kept apart so the template decides whether it is shown again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reasoning_content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_call_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Message::System {
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Message::User {
            content: content.into(),
        }
    }

    /// The message as the JSON object the chat template receives.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).expect("messages always serialize")
    }
}

/// A call the assistant made, in the OpenAI shape; `arguments` is kept as an object (not the API's JSON
/// string) because the Qwen3 template prints objects with `tojson` and strings verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

/// The function part of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(deserialize_with = "object_or_json_string")]
    pub arguments: Map<String, Json>,
}

impl ToolCall {
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: Map<String, Json>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: function_type(),
            function: FunctionCall {
                name: name.into(),
                arguments,
            },
        }
    }
}

fn function_type() -> String {
    "function".into()
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// OpenAI sends arguments as a JSON string; transcripts and the template use an object. Accept both.
fn object_or_json_string<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Json>, D::Error> {
    use serde::de::Error;
    match Json::deserialize(d)? {
        Json::Object(map) => Ok(map),
        Json::String(text) if text.trim().is_empty() => Ok(Map::new()),
        Json::String(text) => match serde_json::from_str::<Json>(&text) {
            Ok(Json::Object(map)) => Ok(map),
            _ => Err(D::Error::custom(format!(
                "tool call arguments are not a JSON object: {text}"
            ))),
        },
        Json::Null => Ok(Map::new()),
        other => Err(D::Error::custom(format!(
            "tool call arguments must be an object, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openai_messages() {
        let messages: Vec<Message> = serde_json::from_value(json!([
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}
            ]},
            {"role": "tool", "content": "ok", "tool_call_id": "c1"}
        ]))
        .unwrap();
        let Message::Assistant {
            content,
            tool_calls,
            ..
        } = &messages[1]
        else {
            panic!()
        };
        assert_eq!(content, "");
        assert_eq!(tool_calls[0].function.arguments["a"], json!(1));
    }

    #[test]
    fn writes_arguments_as_object_in_order() {
        let mut args = Map::new();
        args.insert("z".into(), json!(1));
        args.insert("a".into(), json!("x"));
        let m = Message::Assistant {
            content: "hi".into(),
            reasoning_content: Some("r".into()),
            tool_calls: vec![ToolCall::new("c1", "f", args)],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"role":"assistant","content":"hi","reasoning_content":"r","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"z":1,"a":"x"}}}]}"#
        );
    }
}
