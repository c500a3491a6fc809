//! The chat-completions request as clients send it, read into the library's types. Each field is read
//! on its own so a wrong type or range names its `param`; unknown fields are ignored, as OpenAI does.

use super::error::ApiError;
use crate::chat::{AnswerFormat, Message};
use crate::config::{GenerateSpec, check, check_generate};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

/// What both endpoints read the same way: the model, sampling and length, streaming.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The model the client named, if any (checked against the served name).
    pub model: Option<String>,
    /// Sampling, `max_tokens` and `stop`, over the served defaults.
    pub generate: GenerateSpec,
    /// Whether `max_tokens` was given (then a prompt leaving less room is refused, not shortened).
    pub max_tokens_given: bool,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// Each generated token's log-probability with this many of the most likely tokens' (chat's
    /// `logprobs: true` + `top_logprobs`, completions' `logprobs: N`); None: not asked.
    pub logprobs: Option<usize>,
}

/// A `POST /v1/chat/completions` body, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// Tool schemas in the OpenAI shape, rendered by the template as given; empty when the request
    /// sent none or `tool_choice` is `"none"`.
    pub tools: Vec<Json>,
    /// `enable_thinking` from `chat_template_kwargs` (or the top level); None leaves the served default.
    pub thinking: Option<bool>,
    /// What the answer must be, from `tool_choice` (`required`, a named function) or
    /// `response_format` (`json_object`, `json_schema`): enforced by constrained decoding.
    pub format: Option<AnswerFormat>,
    pub settings: Settings,
}

/// A `POST /v1/completions` body, checked: a raw prompt the model continues, no template.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub prompt: String,
    pub settings: Settings,
}

/// OpenAI's default `max_tokens` for `/v1/completions` (vLLM's too).
pub const COMPLETION_MAX_TOKENS: usize = 16;

/// The most alternatives a token's logprobs may list: OpenAI's limit for chat (vLLM's default
/// `max_logprobs` too).
pub const MAX_TOP_LOGPROBS: usize = 20;

impl ChatRequest {
    /// Reads a request body; malformed JSON, wrong types and values out of range are 400s.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
        let body = object(body, "messages")?;
        let messages = messages(&body)?;
        let mut settings = settings(&body)?;
        settings.logprobs = chat_logprobs(&body)?;
        let (tools, forced) = tools(&body)?;
        let format = match (forced, response_format(&body)?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "response_format",
                    "a forced tool_choice and a response_format cannot both shape the answer: send \
                     one of them",
                ));
            }
            (forced, format) => forced.or(format),
        };
        let kwargs: Option<Map<String, Json>> = field(&body, "chat_template_kwargs")?;
        let thinking = match kwargs.as_ref().and_then(|k| k.get("enable_thinking")) {
            None | Some(Json::Null) => field(&body, "enable_thinking")?,
            Some(Json::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(ApiError::invalid(
                    "chat_template_kwargs.enable_thinking",
                    "chat_template_kwargs.enable_thinking must be a boolean",
                ));
            }
        };
        Ok(ChatRequest {
            messages,
            tools,
            thinking,
            format,
            settings,
        })
    }
}

impl CompletionRequest {
    /// Reads a request body: `prompt` is a string or a list of one string; `echo`, `suffix` and
    /// `best_of` above 1 are refused (they would change what the answer must be).
    pub fn parse(body: &[u8]) -> Result<CompletionRequest, ApiError> {
        let body = object(body, "prompt")?;
        let prompt = match body.get("prompt") {
            Some(Json::String(text)) => text.clone(),
            Some(Json::Array(list)) if list.len() == 1 && list[0].is_string() => {
                list[0].as_str().unwrap_or_default().to_string()
            }
            _ => {
                return Err(ApiError::invalid(
                    "prompt",
                    "`prompt` must be a string (or a list of one string; token ids and several \
                     prompts are not supported: send one request per prompt, as text)",
                ));
            }
        };
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` is empty: send the text the model should continue",
            ));
        }
        if field::<bool>(&body, "echo")? == Some(true) {
            return Err(ApiError::invalid(
                "echo",
                "echo is not supported: leave it out and prepend the prompt yourself",
            ));
        }
        if field::<String>(&body, "suffix")?.is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid(
                "suffix",
                "suffix (fill-in-the-middle) is not supported: leave it out",
            ));
        }
        if field::<u64>(&body, "best_of")?.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "best_of",
                "only best_of=1 is supported: leave it out",
            ));
        }
        let mut settings = settings(&body)?;
        // The completions API's `logprobs` is the count of alternatives (0: the token's own only).
        settings.logprobs = field::<u64>(&body, "logprobs")?
            .map(|top| top_count("logprobs", top))
            .transpose()?;
        settings
            .generate
            .max_new_tokens
            .get_or_insert(COMPLETION_MAX_TOKENS);
        Ok(CompletionRequest { prompt, settings })
    }
}

/// The body as a JSON object; `key` names the field a client most needs to send.
fn object(body: &[u8], key: &str) -> Result<Map<String, Json>, ApiError> {
    let value: Json = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON ({e}): send a JSON object"),
        )
    })?;
    match value {
        Json::Object(body) => Ok(body),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("the request body must be a JSON object with `{key}`"),
        )),
    }
}

/// The fields both endpoints share: `model`, `n`, `stream`, `stream_options`, sampling and length.
fn settings(body: &Map<String, Json>) -> Result<Settings, ApiError> {
    let n: Option<u64> = field(body, "n")?;
    if n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n",
            "only n=1 is supported: send one request per completion",
        ));
    }
    let stream: Option<bool> = field(body, "stream")?;
    let options: Option<Map<String, Json>> = field(body, "stream_options")?;
    let include_usage = match options.as_ref().and_then(|o| o.get("include_usage")) {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "stream_options.include_usage",
                "stream_options.include_usage must be a boolean",
            ));
        }
    };
    let (generate, max_tokens_given) = generate(body)?;
    Ok(Settings {
        model: field(body, "model")?,
        generate,
        max_tokens_given,
        stream: stream.unwrap_or(false),
        include_usage,
        logprobs: None,
    })
}

/// The field `name` as a `T`; absent or null is None, anything else of the wrong type a 400.
fn field<T: DeserializeOwned>(body: &Map<String, Json>, name: &str) -> Result<Option<T>, ApiError> {
    match body.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                ApiError::invalid(name, format!("`{name}` has the wrong type or shape: {e}"))
            }),
    }
}

/// Sampling and length settings, checked by the rules of an agent file's `generate` block.
fn generate(body: &Map<String, Json>) -> Result<(GenerateSpec, bool), ApiError> {
    let max_tokens: Option<usize> = match field(body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => field(body, "max_tokens")?,
    };
    if let Some(n) = max_tokens {
        check::tokens(n)
            .map_err(|rule| ApiError::invalid("max_tokens", format!("max_tokens {rule}")))?;
    }
    let top_k: Option<i64> = field(body, "top_k")?;
    let top_k = match top_k {
        // vLLM's "off" is -1; ours is 0.
        Some(-1) | Some(0) => Some(0),
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("top_k must be -1 or 0 (off) or a positive count, not {k}"),
            ));
        }
        None => None,
    };
    let stop = match body.get("stop") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(vec![s.clone()]),
        Some(_) => field::<Vec<String>>(body, "stop")?,
    };
    let spec = GenerateSpec {
        thinking: None,
        max_new_tokens: max_tokens,
        temperature: field(body, "temperature")?,
        top_k,
        top_p: field(body, "top_p")?,
        min_p: field(body, "min_p")?,
        presence_penalty: field(body, "presence_penalty")?,
        repetition_penalty: field(body, "repetition_penalty")?,
        seed: field(body, "seed")?,
        stop,
        constrain_tool_calls: None,
    };
    check_generate(&spec, "request").map_err(|problem| {
        let param = problem.path.last().cloned().unwrap_or_default();
        ApiError::invalid(&param, problem.message.replacen("request.", "", 1))
    })?;
    Ok((spec, max_tokens.is_some()))
}

/// Chat's `logprobs: true` with `top_logprobs` alternatives (default 0); alternatives without
/// `logprobs: true` are refused, as OpenAI does.
fn chat_logprobs(body: &Map<String, Json>) -> Result<Option<usize>, ApiError> {
    let wanted = field::<bool>(body, "logprobs")?.unwrap_or(false);
    let top = field::<u64>(body, "top_logprobs")?
        .map(|top| top_count("top_logprobs", top))
        .transpose()?;
    match (wanted, top) {
        (false, Some(top)) if top > 0 => Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs `logprobs: true` as well",
        )),
        (false, _) => Ok(None),
        (true, top) => Ok(Some(top.unwrap_or(0))),
    }
}

/// A count of alternatives per token, at most `MAX_TOP_LOGPROBS`.
fn top_count(param: &str, top: u64) -> Result<usize, ApiError> {
    match usize::try_from(top) {
        Ok(top) if top <= MAX_TOP_LOGPROBS => Ok(top),
        _ => Err(ApiError::invalid(
            param,
            format!("{param} must be between 0 and {MAX_TOP_LOGPROBS}, not {top}"),
        )),
    }
}

/// `response_format`: `text` (or none) leaves the answer free; `json_object` asks for any JSON
/// object, `json_schema` for one valid against `json_schema.schema` (enforced whether or not
/// `strict` is set, as vLLM does).
fn response_format(body: &Map<String, Json>) -> Result<Option<AnswerFormat>, ApiError> {
    let Some(format) = field::<Map<String, Json>>(body, "response_format")? else {
        return Ok(None);
    };
    match format.get("type").and_then(Json::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(AnswerFormat::Json(None))),
        Some("json_schema") => match &format.get("json_schema").map(|s| &s["schema"]) {
            Some(Json::Object(schema)) => {
                Ok(Some(AnswerFormat::Json(Some(Json::Object(schema.clone())))))
            }
            Some(Json::Bool(true)) | Some(Json::Null) => Ok(Some(AnswerFormat::Json(None))),
            _ => Err(ApiError::invalid(
                "response_format.json_schema.schema",
                "response_format json_schema needs `json_schema: {\"name\": ..., \"schema\": {...}}` \
                 with the schema as an object",
            )),
        },
        Some(other) => Err(ApiError::invalid(
            "response_format.type",
            format!(
                "response_format type `{other}` is not supported: send text, json_object or \
                 json_schema"
            ),
        )),
    }
}

/// The tools to render, and the calls a forced `tool_choice` demands: none rendered for `"none"`;
/// `"required"`: one or more calls of any tool (more only with `parallel_tool_calls`, default true);
/// a named function: one call of it.
fn tools(body: &Map<String, Json>) -> Result<(Vec<Json>, Option<AnswerFormat>), ApiError> {
    let tools: Vec<Json> = field(body, "tools")?.unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        let named = tool["function"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if tool["type"] != "function" || !named {
            return Err(ApiError::invalid(
                "tools",
                format!(
                    "tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ..., \
                     \"parameters\": {{...}}}}}}"
                ),
            ));
        }
    }
    let parallel = field::<bool>(body, "parallel_tool_calls")?.unwrap_or(true);
    let names = || {
        tools
            .iter()
            .map(|t| t["function"]["name"].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let auto = || {
        let strict = |t: &Json| t["function"]["strict"] == Json::Bool(true);
        if !tools.iter().any(strict) {
            return None;
        }
        // Only strict tools' arguments are held to their schemas; any tool may be named.
        let tools = tools
            .iter()
            .map(|t| {
                let mut tool = t.clone();
                if !strict(t) {
                    tool["function"]["parameters"] = serde_json::json!({"type": "object"});
                }
                tool
            })
            .collect();
        Some(AnswerFormat::ToolCalls {
            tools,
            parallel,
            optional: true,
        })
    };
    match body.get("tool_choice") {
        None | Some(Json::Null) => Ok((tools.clone(), auto())),
        Some(Json::String(choice)) if choice == "auto" => Ok((tools.clone(), auto())),
        Some(Json::String(choice)) if choice == "none" => Ok((Vec::new(), None)),
        Some(Json::String(choice)) if choice == "required" => {
            if tools.is_empty() {
                return Err(ApiError::invalid(
                    "tool_choice",
                    "tool_choice \"required\" needs `tools` to choose from",
                ));
            }
            let format = AnswerFormat::ToolCalls {
                tools: tools.clone(),
                parallel,
                optional: false,
            };
            Ok((tools, Some(format)))
        }
        Some(Json::Object(choice))
            if choice.get("type").and_then(Json::as_str) == Some("function") =>
        {
            let name = &choice.get("function").unwrap_or(&Json::Null)["name"];
            let Some(tool) = tools.iter().find(|t| &t["function"]["name"] == name) else {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "tool_choice names the function {name}, which is not among `tools` ({})",
                        names()
                    ),
                ));
            };
            let format = AnswerFormat::ToolCalls {
                tools: vec![tool.clone()],
                parallel: false,
                optional: false,
            };
            Ok((tools, Some(format)))
        }
        Some(choice) => Err(ApiError::invalid(
            "tool_choice",
            format!(
                "tool_choice {choice} is not understood: send \"auto\", \"none\", \"required\" or \
                 {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
            ),
        )),
    }
}

/// The conversation, with the spellings clients use normalized: `reasoning` for `reasoning_content`,
/// content as a list of text parts, null content.
fn messages(body: &Map<String, Json>) -> Result<Vec<Message>, ApiError> {
    let Some(Json::Array(list)) = body.get("messages") else {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must be a non-empty list of {\"role\", \"content\"} objects",
        ));
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, message)| {
            let param = format!("messages[{i}]");
            let Json::Object(message) = message else {
                return Err(ApiError::invalid(
                    &param,
                    format!("{param} must be an object"),
                ));
            };
            let mut message = message.clone();
            // Newer OpenAI clients send the system prompt as `developer`.
            if message.get("role").and_then(Json::as_str) == Some("developer") {
                message.insert("role".into(), "system".into());
            }
            if let Some(reasoning) = message.remove("reasoning")
                && !message.contains_key("reasoning_content")
            {
                message.insert("reasoning_content".into(), reasoning);
            }
            if let Some(content) = message.get_mut("content") {
                *content = text_of(content).map_err(|why| {
                    ApiError::invalid(
                        &format!("{param}.content"),
                        format!("{param}.content {why}"),
                    )
                })?;
            }
            if message.get("role").and_then(Json::as_str) != Some("assistant") {
                message
                    .entry("content")
                    .or_insert(Json::String(String::new()));
            }
            serde_json::from_value(Json::Object(message)).map_err(|e| {
                ApiError::invalid(
                    &param,
                    format!(
                        "{param} is not a chat message ({e}): roles are system, user, assistant \
                         and tool"
                    ),
                )
            })
        })
        .collect()
}

/// Message content as one string: a string, null (empty), or a list of `{"type": "text"}` parts.
fn text_of(content: &Json) -> Result<Json, String> {
    match content {
        Json::String(_) => Ok(content.clone()),
        Json::Null => Ok(Json::String(String::new())),
        Json::Array(parts) => parts
            .iter()
            .map(
                |part| match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => Ok(text),
                    _ => Err(
                        "holds a part that is not text: only text parts are supported".to_string(),
                    ),
                },
            )
            .collect::<Result<String, String>>()
            .map(Json::String),
        _ => Err("must be a string or a list of text parts".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        ChatRequest::parse(body.as_bytes())
    }

    #[test]
    fn reads_what_clients_send() {
        let request = parse(
            r#"{"model": "m", "messages": [
                {"role": "system", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "reasoning": "think",
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
              "stop": "END", "top_k": -1, "max_completion_tokens": 9, "unknown": {"x": 1},
              "chat_template_kwargs": {"enable_thinking": false}, "stream": true,
              "stream_options": {"include_usage": true}}"#,
        )
        .unwrap();
        assert_eq!(request.messages[0], Message::system("be brief"));
        let developer = parse(r#"{"messages": [{"role": "developer", "content": "x"}]}"#).unwrap();
        assert_eq!(developer.messages, [Message::system("x")]);
        let Message::Assistant {
            reasoning_content,
            tool_calls,
            ..
        } = &request.messages[2]
        else {
            panic!("{:?}", request.messages[2])
        };
        assert_eq!(reasoning_content.as_deref(), Some("think"));
        assert_eq!(tool_calls[0].function.arguments["a"], 1);
        let settings = &request.settings;
        assert_eq!(settings.generate.stop, Some(vec!["END".to_string()]));
        assert_eq!(settings.generate.top_k, Some(0));
        assert_eq!(settings.generate.max_new_tokens, Some(9));
        assert_eq!(request.thinking, Some(false));
        assert!(settings.stream && settings.include_usage && settings.max_tokens_given);
    }

    #[test]
    fn refusals_name_the_field() {
        let user = r#""messages": [{"role": "user", "content": "hi"}]"#;
        for (body, param) in [
            (
                format!("{{{user}, \"temperature\": \"hot\"}}"),
                "temperature",
            ),
            (format!("{{{user}, \"temperature\": -1}}"), "temperature"),
            (format!("{{{user}, \"top_p\": 0}}"), "top_p"),
            (format!("{{{user}, \"n\": 2}}"), "n"),
            (format!("{{{user}, \"max_tokens\": 0}}"), "max_tokens"),
            (format!("{{{user}, \"stop\": [\"\"]}}"), "stop"),
            (
                format!("{{{user}, \"tool_choice\": \"required\"}}"),
                "tool_choice",
            ),
            (
                format!(
                    "{{{user}, \"tool_choice\": {{\"type\": \"function\", \"function\": {{\"name\": \"g\"}}}}, \"tools\": [{{\"type\": \"function\", \"function\": {{\"name\": \"f\"}}}}]}}"
                ),
                "tool_choice",
            ),
            (
                format!(
                    "{{{user}, \"response_format\": {{\"type\": \"json_schema\", \"json_schema\": {{\"schema\": 3}}}}}}"
                ),
                "response_format.json_schema.schema",
            ),
            (
                format!("{{{user}, \"response_format\": {{\"type\": \"yaml\"}}}}"),
                "response_format.type",
            ),
            (
                format!("{{{user}, \"tools\": [{{\"type\": \"function\"}}]}}"),
                "tools",
            ),
            (
                r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#.into(),
                "messages[0]",
            ),
            (r#"{"messages": []}"#.into(), "messages"),
            (format!("{{{user}, \"logprobs\": 1}}"), "logprobs"),
            (
                format!("{{{user}, \"logprobs\": true, \"top_logprobs\": 21}}"),
                "top_logprobs",
            ),
            (
                format!("{{{user}, \"logprobs\": true, \"top_logprobs\": -1}}"),
                "top_logprobs",
            ),
            (format!("{{{user}, \"top_logprobs\": 2}}"), "top_logprobs"),
        ] {
            let error = parse(&body).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
            assert_eq!(error.status, 400);
        }
        assert_eq!(parse("{not json").unwrap_err().status, 400);
        assert_eq!(parse("[1]").unwrap_err().status, 400);
    }

    #[test]
    fn completions_take_one_text_prompt_and_refuse_what_they_cannot_honour() {
        let request =
            CompletionRequest::parse(br#"{"prompt": ["Once upon"], "stop": ".", "seed": 3}"#)
                .unwrap();
        assert_eq!(request.prompt, "Once upon");
        assert_eq!(
            request.settings.generate.max_new_tokens,
            Some(COMPLETION_MAX_TOKENS)
        );
        assert!(!request.settings.max_tokens_given);
        assert_eq!(request.settings.generate.seed, Some(3));
        for (body, param) in [
            (r#"{"prompt": [1, 2]}"#, "prompt"),
            (r#"{"prompt": ["a", "b"]}"#, "prompt"),
            (r#"{"messages": []}"#, "prompt"),
            (r#"{"prompt": "a", "echo": true}"#, "echo"),
            (r#"{"prompt": "a", "suffix": "z"}"#, "suffix"),
            (r#"{"prompt": "a", "best_of": 2}"#, "best_of"),
            (r#"{"prompt": "a", "logprobs": 21}"#, "logprobs"),
            (r#"{"prompt": "a", "logprobs": true}"#, "logprobs"),
            (r#"{"prompt": "a", "n": 3}"#, "n"),
            (r#"{"prompt": "a", "max_tokens": 0}"#, "max_tokens"),
        ] {
            let error = CompletionRequest::parse(body.as_bytes()).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
        }
        let echo_off = CompletionRequest::parse(br#"{"prompt": "a", "echo": false}"#);
        assert!(echo_off.is_ok());
    }

    #[test]
    fn forced_choices_and_formats_become_answer_formats() {
        let tool = |name: &str| serde_json::json!({"type": "function", "function": {"name": name, "parameters": {}}});
        let body = |extra: &str| {
            format!(
                r#"{{"messages": [{{"role": "user", "content": "hi"}}], "tools": [{}, {}] {extra}}}"#,
                tool("f"),
                tool("g")
            )
        };
        let format = |extra: &str| parse(&body(extra)).unwrap().format;
        assert_eq!(format(""), None);
        assert_eq!(
            format(r#", "tool_choice": "required", "parallel_tool_calls": false"#),
            Some(AnswerFormat::ToolCalls {
                tools: vec![tool("f"), tool("g")],
                parallel: false,
                optional: false
            })
        );
        assert_eq!(
            format(r#", "tool_choice": {"type": "function", "function": {"name": "g"}}"#),
            Some(AnswerFormat::ToolCalls {
                tools: vec![tool("g")],
                parallel: false,
                optional: false
            })
        );
        assert_eq!(
            format(r#", "response_format": {"type": "json_object"}"#),
            Some(AnswerFormat::Json(None))
        );
        let schema = r#"{"type": "object", "properties": {"a": {"type": "integer"}}}"#;
        assert_eq!(
            format(&format!(
                r#", "response_format": {{"type": "json_schema", "json_schema": {{"name": "x", "strict": true, "schema": {schema}}}}}"#
            )),
            Some(AnswerFormat::Json(Some(
                serde_json::from_str(schema).unwrap()
            )))
        );
        let strict = serde_json::json!({"type": "function", "function": {"name": "s",
            "strict": true, "parameters": {"type": "object", "properties": {}}}});
        let request = parse(&format!(
            r#"{{"messages": [{{"role": "user", "content": "hi"}}], "tools": [{}, {strict}]}}"#,
            tool("f")
        ))
        .unwrap();
        let loose = serde_json::json!({"type": "function", "function": {"name": "f",
            "parameters": {"type": "object"}}});
        assert_eq!(
            request.format,
            Some(AnswerFormat::ToolCalls {
                tools: vec![loose, strict],
                parallel: true,
                optional: true
            })
        );
        let both = parse(&body(
            r#", "tool_choice": "required", "response_format": {"type": "json_object"}"#,
        ));
        assert_eq!(both.unwrap_err().param.as_deref(), Some("response_format"));
    }

    #[test]
    fn logprobs_are_read_as_a_count_of_alternatives() {
        let user = r#""messages": [{"role": "user", "content": "hi"}]"#;
        let chat = |extra: &str| {
            parse(&format!("{{{user}{extra}}}"))
                .unwrap()
                .settings
                .logprobs
        };
        assert_eq!(chat(""), None);
        assert_eq!(chat(r#", "logprobs": false, "top_logprobs": 0"#), None);
        assert_eq!(chat(r#", "logprobs": true"#), Some(0));
        assert_eq!(chat(r#", "logprobs": true, "top_logprobs": 20"#), Some(20));
        let text = |body: &str| {
            CompletionRequest::parse(body.as_bytes())
                .unwrap()
                .settings
                .logprobs
        };
        assert_eq!(text(r#"{"prompt": "a"}"#), None);
        assert_eq!(text(r#"{"prompt": "a", "logprobs": 0}"#), Some(0));
        assert_eq!(text(r#"{"prompt": "a", "logprobs": 5}"#), Some(5));
    }

    #[test]
    fn tool_choice_none_renders_no_tools() {
        let request = parse(
            r#"{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}"#,
        )
        .unwrap();
        assert!(request.tools.is_empty());
    }
}
