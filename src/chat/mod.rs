//! The chat protocol: what the model reads (messages rendered by its own template, tokenized) and what it
//! writes (text parsed into thinking, answer and tool calls).

pub mod grammar;
mod lenient_json;
pub mod message;
pub mod parser;
pub mod pyjson;
pub mod template;
pub mod tokenizer;

pub use grammar::AnswerFormat;
pub use message::{FunctionCall, Message, ToolCall};
pub use parser::{
    FinishReason, OutputParser, ParseEvent, ParsedOutput, ParsedToolCall, arguments_from_text,
};
pub use template::{ChatTemplate, RenderRequest};
pub use tokenizer::{IncrementalDecoder, Tokenizer};
