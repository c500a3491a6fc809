//! The model's own chat template, rendered exactly as transformers' `apply_chat_template` does.
//!
//! The template is read from the model directory (never hard-coded) and run in a minijinja environment
//! configured like transformers' Jinja2 one: `trim_blocks`, `lstrip_blocks`, loop controls, Python string
//! methods, Python's `str()` for printed values, `json.dumps`-compatible `tojson`, `raise_exception` and
//! `strftime_now`.

use super::pyjson::{self, DumpOptions};
use anyhow::{Context, Result, bail};
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value as Json};
use std::path::Path;

const TEMPLATE_NAME: &str = "chat_template";

/// What one rendering needs: the same inputs as `apply_chat_template`.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    /// Messages as OpenAI-style JSON objects, passed to the template untouched.
    pub messages: Vec<Json>,
    /// Tool schemas (`{"type": "function", "function": {...}}`); None renders no tool section.
    pub tools: Option<Vec<Json>>,
    pub add_generation_prompt: bool,
    /// Unset leaves the variable undefined, which the Qwen3 template treats as thinking on.
    pub enable_thinking: Option<bool>,
    /// Further template variables, as transformers' `**kwargs`.
    pub extra: Map<String, Json>,
}

impl RenderRequest {
    /// Reads `{"messages", "tools", "add_generation_prompt", "enable_thinking", ...}`, the request shape
    /// of `qwen3-agent render`; unknown keys become template variables.
    pub fn from_json(request: Json) -> Result<Self> {
        let Json::Object(mut object) = request else {
            bail!("the request must be a JSON object with \"messages\"");
        };
        let messages = match object.remove("messages") {
            Some(Json::Array(messages)) => messages,
            _ => bail!("the request needs \"messages\": an array of message objects"),
        };
        let tools = match object.remove("tools") {
            None | Some(Json::Null) => None,
            Some(Json::Array(tools)) => Some(tools),
            Some(_) => bail!("\"tools\" must be an array of tool schemas"),
        };
        let add_generation_prompt = match object.remove("add_generation_prompt") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => b,
            Some(_) => bail!("\"add_generation_prompt\" must be true or false"),
        };
        let enable_thinking = match object.remove("enable_thinking") {
            None | Some(Json::Null) => None,
            Some(Json::Bool(b)) => Some(b),
            Some(_) => bail!("\"enable_thinking\" must be true or false"),
        };
        Ok(RenderRequest {
            messages,
            tools,
            add_generation_prompt,
            enable_thinking,
            extra: object,
        })
    }
}

/// A compiled chat template plus the special-token variables transformers passes alongside it.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    special_tokens: Map<String, Json>,
}

impl ChatTemplate {
    /// Loads the template of a model directory: `chat_template.jinja` if present (newer checkpoints ship
    /// it and transformers prefers it), else `chat_template` from `tokenizer_config.json`.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Map<String, Json> = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", config_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", config_path.display())),
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = if jinja_path.is_file() {
            std::fs::read_to_string(&jinja_path)
                .with_context(|| format!("reading {}", jinja_path.display()))?
        } else {
            match config.get("chat_template") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Array(named)) => pick_named_template(named)
                    .with_context(|| format!("in {}", config_path.display()))?,
                _ => bail!(
                    "no chat template in {}: expected chat_template.jinja or a \"chat_template\" key in \
                     tokenizer_config.json (copy them from the model's original repository)",
                    dir.display()
                ),
            }
        };
        Self::new(source, special_token_vars(&config))
    }

    /// Compiles template source; `special_tokens` become template variables (`eos_token`, ...).
    pub fn new(source: String, special_tokens: Map<String, Json>) -> Result<Self> {
        let mut env = Environment::new();
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax.trim_blocks(true).lstrip_blocks(true);
        env.set_syntax(syntax.build().expect("default delimiters are valid"));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            out.write_str(&pyjson::python_str(value))
                .map_err(minijinja::Error::from)
        });
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source)
            .context("the chat template does not compile")?;
        Ok(ChatTemplate {
            env,
            special_tokens,
        })
    }

    /// Renders the prompt text, byte-identical to `apply_chat_template(..., tokenize=False)`.
    pub fn render(&self, request: &RenderRequest) -> Result<String> {
        let mut context = self.special_tokens.clone();
        context.insert("messages".into(), Json::Array(request.messages.clone()));
        context.insert(
            "tools".into(),
            request.tools.clone().map(Json::Array).unwrap_or(Json::Null),
        );
        context.insert("documents".into(), Json::Null);
        context.insert(
            "add_generation_prompt".into(),
            request.add_generation_prompt.into(),
        );
        if let Some(thinking) = request.enable_thinking {
            context.insert("enable_thinking".into(), thinking.into());
        }
        for (key, value) in &request.extra {
            context.insert(key.clone(), value.clone());
        }
        let template = self.env.get_template(TEMPLATE_NAME)?;
        template
            .render(Value::from(Serde(&context)))
            .map_err(|e| anyhow::anyhow!("chat template failed: {}", describe(&e)))
    }
}

fn describe(error: &minijinja::Error) -> String {
    match error.kind() {
        ErrorKind::InvalidOperation if error.name().is_none() => {
            error.detail().unwrap_or("invalid operation").to_string()
        }
        _ => format!("{error:#}"),
    }
}

/// transformers picks `tool_use`/`default` among named templates; we render the default one and let
/// the tools go into it, which is what Qwen3 checkpoints (one template) need.
fn pick_named_template(named: &[Json]) -> Result<String> {
    named
        .iter()
        .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
        .and_then(|t| t.get("template").and_then(Json::as_str))
        .map(str::to_string)
        .context("chat_template is a list without a template named \"default\"")
}

/// The special tokens transformers passes as template variables (`**special_tokens_map`).
fn special_token_vars(config: &Map<String, Json>) -> Map<String, Json> {
    let mut vars = Map::new();
    for key in [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ] {
        let text = match config.get(key) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).map(str::to_string),
            _ => None,
        };
        if let Some(text) = text {
            vars.insert(key.into(), Json::String(text));
        }
    }
    if let Some(extra) = config.get("additional_special_tokens") {
        vars.insert("additional_special_tokens".into(), extra.clone());
    }
    vars
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let mut options = DumpOptions::default();
    let indent: Option<Value> = kwargs.get("indent")?;
    if let Some(indent) = indent.filter(|v| !v.is_none()) {
        options.indent = Some(match indent.as_i64() {
            Some(n) => " ".repeat(n.max(0) as usize),
            None => indent.as_str().unwrap_or_default().to_string(),
        });
        options.item_separator = ",".into();
    }
    let separators: Option<Value> = kwargs.get("separators")?;
    if let Some(separators) = separators.filter(|v| !v.is_none()) {
        options.item_separator = separators
            .get_item_by_index(0)?
            .as_str()
            .unwrap_or(",")
            .into();
        options.key_separator = separators
            .get_item_by_index(1)?
            .as_str()
            .unwrap_or(":")
            .into();
    }
    options.sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    options.ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(pyjson::dumps(value, &options)?))
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `datetime.now().strftime(format)`, which templates use to date their system prompts. Lenient, as
/// glibc's strftime (what Python calls) is: a directive it cannot format is written as it stands.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    let config = jiff::fmt::strtime::Config::new().lenient(true);
    jiff::fmt::strtime::BrokenDownTime::from(&jiff::ZonedDateTime::now())
        .to_string_with_config(&config, &format)
        .map_err(|e| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now({format:?}): {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::{ChatTemplate, RenderRequest};

    fn render(source: &str) -> anyhow::Result<String> {
        let template = ChatTemplate::new(source.into(), Default::default())?;
        template.render(&RenderRequest::from_json(
            serde_json::json!({"messages": []}),
        )?)
    }

    #[test]
    fn strftime_now_formats_the_local_date_as_python_does() {
        let year = jiff::ZonedDateTime::now().year().to_string();
        let rendered = render(r#"{{ strftime_now("%Y-%m") }}"#).unwrap();
        assert!(rendered.starts_with(&format!("{year}-")), "{rendered}");
        assert_eq!(rendered.len(), 7, "{rendered}");
    }

    #[test]
    fn a_directive_strftime_cannot_format_is_kept_as_written_not_a_panic() {
        assert_eq!(render(r#"{{ strftime_now("%+ %0") }}"#).unwrap(), "%+ %0");
    }
}
