//! What a constrained answer must look like, written as a grammar in llguidance's Lark dialect: Qwen3's
//! own output form, so the parser reads a constrained answer like any other. Thinking stays free: in
//! a thinking turn the grammar is `<think>`, any text, `</think>`, and only then the constrained part
//! (constraining the thought is a known vLLM/SGLang bug class). Plain text in; the engine compiles it
//! (`engine::constraint`).

use serde_json::{Value as Json, json};

/// The part of the answer after any thinking that a request constrains.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerFormat {
    /// A JSON value valid against the schema; None: any JSON object (`json_object`).
    Json(Option<Json>),
    /// `<tool_call>` blocks calling one of `tools` (OpenAI-shape tool objects) with arguments valid
    /// against its `parameters`; `parallel` allows more than one call.
    ToolCalls { tools: Vec<Json>, parallel: bool },
}

/// JSON as Qwen3 writes it (`json.dumps`' separators, no other whitespace): one form, so a small model
/// cannot wander into endless whitespace, and the same bytes the template renders calls with.
fn compact(mut schema: Json) -> Json {
    if let Json::Object(map) = &mut schema {
        map.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// The schema of one call's JSON: `{"name": <the tool's name>, "arguments": <its parameters>}`.
fn call_schema(tool: &Json) -> Json {
    let function = &tool["function"];
    let parameters = match &function["parameters"] {
        Json::Object(schema) if !schema.is_empty() => Json::Object(schema.clone()),
        _ => json!({"type": "object"}),
    };
    json!({
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": false,
    })
}

impl AnswerFormat {
    /// The grammar of the whole output; `thinking`: the prompt left the think block open (the model
    /// writes `<think>…</think>` first).
    pub fn grammar(&self, thinking: bool) -> String {
        let answer = match self {
            AnswerFormat::Json(schema) => {
                let schema = schema.clone().unwrap_or_else(|| json!({"type": "object"}));
                format!("answer: %json {}\n", compact(schema))
            }
            AnswerFormat::ToolCalls { tools, parallel } => {
                let schema = match tools.as_slice() {
                    [tool] => call_schema(tool),
                    tools => json!({"anyOf": tools.iter().map(call_schema).collect::<Vec<_>>()}),
                };
                let calls = if *parallel {
                    "call (\"\\n\" call)*"
                } else {
                    "call"
                };
                format!(
                    "answer: {calls}\ncall: \"<tool_call>\\n\" arguments \"\\n</tool_call>\"\n\
                     arguments: %json {}\n",
                    compact(schema)
                )
            }
        };
        let start = if thinking {
            "start: \"<think>\" thought SPACE answer\n\
             thought[suffix=\"</think>\"]: /(.|\\n)*/\n\
             SPACE: /[ \\t\\r\\n]*/\n"
        } else {
            "start: answer\n"
        };
        format!("{start}{answer}")
    }
}
