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
    /// against its `parameters`; `parallel` allows more than one call. With `optional`, text without
    /// `<tool_call>` may come first and the calls may be left out (`tool_choice: "auto"` with strict
    /// tools: free text until the model opens a call, then the schemas).
    ToolCalls {
        tools: Vec<Json>,
        parallel: bool,
        optional: bool,
    },
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
            AnswerFormat::ToolCalls {
                tools,
                parallel,
                optional,
            } => {
                let schema = match tools.as_slice() {
                    [tool] => call_schema(tool),
                    tools => json!({"anyOf": tools.iter().map(call_schema).collect::<Vec<_>>()}),
                };
                let calls = if *parallel {
                    "call (\"\\n\" call)*"
                } else {
                    "call"
                };
                // Optional calls: text that never opens a call, or text up to the first
                // `<tool_call>` (a lazy lexeme ending at that tag: a greedy text lexeme would run
                // into the tag and never let the call begin) and the calls from there.
                let more = if *parallel { " (\"\\n\" call)*" } else { "" };
                let answer = if *optional {
                    format!(
                        "answer: TEXT | opened \"\\n\" arguments \"\\n</tool_call>\"{more}\n\
                         opened[suffix=\"<tool_call>\"]: /(.|\\n)*/\n\
                         TEXT: /(.|\\n)*/ & ~/(.|\\n)*<tool_call>(.|\\n)*/\n"
                    )
                } else {
                    format!("answer: {calls}\n")
                };
                format!(
                    "{answer}call: \"<tool_call>\\n\" arguments \"\\n</tool_call>\"\n\
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
