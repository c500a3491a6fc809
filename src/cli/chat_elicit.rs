//! An MCP server's request for input asked of the person at `chat`'s terminal. A form is asked one
//! property at a time from its JSON schema: the property's description, its choices (`enum`,
//! `oneOf`/`anyOf` of `const`s, legacy `enumNames`; several for an array), bounds and default; Enter
//! takes the default or skips an optional property, and a value is asked again until it fits its type.
//! A URL request shows the URL and asks whether the person has opened it. `:decline` or `:cancel` at
//! any question refuses; the end of input cancels. Server text is hostile: shown through `printable`.

use super::chat_input::Input;
use super::printer::printable;
use qwen3_agent::tools::mcp::{Answer, Person, Question, QuestionKind};
use serde_json::{Map, Value as Json};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The person at the terminal, answering from `input` on stderr's prompts, one question at a time.
pub fn person(input: Arc<Input>) -> Person {
    let one_at_a_time = Mutex::new(());
    Arc::new(move |question: &Question| {
        let _asking = one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        let turn = input.turn();
        ask(question, &mut || input.answer(turn), &mut std::io::stderr())
    })
}

/// What the person answers to `question`, reading lines from `read` (`None`: no more input) and
/// writing the prompts to `out`.
pub fn ask(
    question: &Question,
    read: &mut dyn FnMut() -> Option<String>,
    out: &mut dyn Write,
) -> Answer {
    let mut terminal = Terminal { read, out };
    let server = printable(&question.server).into_owned();
    let message = printable(&question.message).into_owned();
    match &question.kind {
        QuestionKind::Url { url } => {
            terminal.say(&format!(
                "\n[{server}] asks you to open a URL: {message}\n  {}",
                printable(url)
            ));
            terminal.choice("once you have, [a]ccept / [d]ecline / [c]ancel: ")
        }
        QuestionKind::Form { schema } => {
            terminal.say(&format!("\n[{server}] asks for input: {message}"));
            match terminal.choice("answer it? [a]ccept / [d]ecline / [c]ancel: ") {
                Answer::Accept(_) => terminal.form(schema),
                refusal => refusal,
            }
        }
    }
}

struct Terminal<'a> {
    read: &'a mut dyn FnMut() -> Option<String>,
    out: &'a mut dyn Write,
}

impl Terminal<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    /// Prompts and reads one line (trimmed); `Err` is the refusal that ends the question:
    /// `:decline`, `:cancel`, or the end of input (a cancel).
    fn line(&mut self, prompt: &str) -> Result<String, Answer> {
        let _ = write!(self.out, "{prompt}");
        let _ = self.out.flush();
        let Some(line) = (self.read)() else {
            let _ = writeln!(self.out);
            return Err(Answer::Cancel);
        };
        match line.trim() {
            ":decline" => Err(Answer::Decline),
            ":cancel" => Err(Answer::Cancel),
            text => Ok(text.to_string()),
        }
    }

    /// Accept (as an empty accept), decline or cancel.
    fn choice(&mut self, prompt: &str) -> Answer {
        loop {
            let line = match self.line(prompt) {
                Ok(line) => line.to_lowercase(),
                Err(refusal) => return refusal,
            };
            match line.as_str() {
                "a" | "accept" | "y" | "yes" => return Answer::Accept(Map::new()),
                "d" | "decline" | "n" | "no" => return Answer::Decline,
                "c" | "cancel" => return Answer::Cancel,
                _ => self.say("  type a, d or c"),
            }
        }
    }

    /// Asks every property of `schema` in turn.
    fn form(&mut self, schema: &Json) -> Answer {
        self.say(
            "  (Enter takes the [default] or skips an optional field; :decline or :cancel refuses)",
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        let mut content = Map::new();
        for (key, property) in schema["properties"].as_object().into_iter().flatten() {
            let field = Field::new(key, property, required.contains(&key.as_str()));
            match self.field(&field) {
                Ok(Some(value)) => {
                    content.insert(key.clone(), value);
                }
                Ok(None) => {}
                Err(refusal) => return refusal,
            }
        }
        Answer::Accept(content)
    }

    /// One property's value, asked until it fits; `None`: skipped (optional, no default).
    fn field(&mut self, field: &Field) -> Result<Option<Json>, Answer> {
        for (n, choice) in field.choices.iter().enumerate() {
            self.say(&format!("    {}) {}", n + 1, printable(&choice.shown())));
        }
        loop {
            let line = self.line(&field.prompt())?;
            if line.is_empty() {
                match (&field.default, field.required) {
                    (Some(default), _) => return Ok(Some(default.clone())),
                    (None, false) => return Ok(None),
                    (None, true) => {
                        self.say("  this one is required: type a value, or :decline / :cancel");
                        continue;
                    }
                }
            }
            match field.parse(&line) {
                Ok(value) => return Ok(Some(value)),
                Err(why) => self.say(&format!("  {why}")),
            }
        }
    }
}

/// One choice of an enumerated property: the value sent and what the person is shown.
struct Choice {
    value: Json,
    title: Option<String>,
}

impl Choice {
    fn shown(&self) -> String {
        let value = text_of(&self.value);
        match &self.title {
            Some(title) if *title != value => format!("{title} ({value})"),
            _ => value,
        }
    }
}

/// A property of a form, as asked.
struct Field {
    key: String,
    /// `string`, `boolean`, `integer`, `number` or `array` (several choices).
    kind: String,
    about: String,
    required: bool,
    default: Option<Json>,
    choices: Vec<Choice>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
}

impl Field {
    fn new(key: &str, property: &Json, required: bool) -> Self {
        let kind = property["type"].as_str().unwrap_or("string").to_string();
        let listed = if kind == "array" {
            &property["items"]
        } else {
            property
        };
        let about = [&property["description"], &property["title"]]
            .into_iter()
            .find_map(Json::as_str)
            .unwrap_or_default()
            .to_string();
        Field {
            key: key.to_string(),
            kind,
            about,
            required,
            default: property.get("default").cloned(),
            choices: choices(listed),
            minimum: property["minimum"].as_f64(),
            maximum: property["maximum"].as_f64(),
            min_items: property["minItems"].as_u64(),
            max_items: property["maxItems"].as_u64(),
        }
    }

    fn prompt(&self) -> String {
        let mut hints = Vec::new();
        if self.required {
            hints.push("required".to_string());
        }
        match self.kind.as_str() {
            "boolean" => hints.push("y/n".into()),
            "array" => hints.push(format!(
                "numbers or values, comma-separated{}",
                bounds(
                    self.min_items.map(|n| n as f64),
                    self.max_items.map(|n| n as f64)
                )
                .map(|b| format!(", {b} of them"))
                .unwrap_or_default()
            )),
            _ if !self.choices.is_empty() => hints.push("a number or a value".into()),
            "integer" | "number" => hints.extend(bounds(self.minimum, self.maximum)),
            _ => {}
        }
        let about = if self.about.is_empty() {
            String::new()
        } else {
            format!(" — {}", self.about)
        };
        let hints = if hints.is_empty() {
            String::new()
        } else {
            format!(" ({})", hints.join("; "))
        };
        let default = match &self.default {
            Some(Json::Array(items)) => format!(
                " [{}]",
                items.iter().map(text_of).collect::<Vec<_>>().join(", ")
            ),
            Some(value) => format!(" [{}]", text_of(value)),
            None => String::new(),
        };
        printable(&format!("  {}{about}{hints}{default}: ", self.key)).into_owned()
    }

    /// The value `line` gives, or why it does not fit.
    fn parse(&self, line: &str) -> Result<Json, String> {
        match self.kind.as_str() {
            "array" => {
                let picked: Vec<Json> = line
                    .split(',')
                    .map(str::trim)
                    .filter(|word| !word.is_empty())
                    .map(|word| self.pick(word))
                    .collect::<Result<_, _>>()?;
                let count = picked.len() as u64;
                if self.min_items.is_some_and(|min| count < min)
                    || self.max_items.is_some_and(|max| count > max)
                {
                    return Err(format!(
                        "pick {}",
                        bounds(
                            self.min_items.map(|n| n as f64),
                            self.max_items.map(|n| n as f64)
                        )
                        .unwrap_or_default()
                    ));
                }
                Ok(Json::Array(picked))
            }
            _ if !self.choices.is_empty() => self.pick(line),
            "boolean" => match line.to_lowercase().as_str() {
                "y" | "yes" | "true" => Ok(Json::Bool(true)),
                "n" | "no" | "false" => Ok(Json::Bool(false)),
                _ => Err("type y or n".into()),
            },
            "integer" => {
                let n: i64 = line
                    .parse()
                    .map_err(|_| "type a whole number".to_string())?;
                self.within(n as f64)?;
                Ok(Json::from(n))
            }
            "number" => {
                let n: f64 = line
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or("type a number")?;
                self.within(n)?;
                Ok(Json::from(n))
            }
            _ => Ok(Json::String(line.to_string())),
        }
    }

    fn within(&self, n: f64) -> Result<(), String> {
        let below = self.minimum.is_some_and(|min| n < min);
        let above = self.maximum.is_some_and(|max| n > max);
        match bounds(self.minimum, self.maximum) {
            Some(range) if below || above => Err(format!("type a number {range}")),
            _ => Ok(()),
        }
    }

    /// The choice `word` names: its number in the list, its value or its title.
    fn pick(&self, word: &str) -> Result<Json, String> {
        let by_number = word
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.choices.get(i));
        by_number
            .or_else(|| {
                self.choices.iter().find(|c| {
                    text_of(&c.value) == word || c.title.as_deref().is_some_and(|t| t == word)
                })
            })
            .map(|choice| choice.value.clone())
            .ok_or_else(|| format!("{word:?} is not one of the choices: type its number"))
    }
}

/// The choices a (property or items) schema lists: `enum` (titled by `enumNames`), or `oneOf` /
/// `anyOf` entries with a `const`.
fn choices(schema: &Json) -> Vec<Choice> {
    if let Some(values) = schema["enum"].as_array() {
        let names = schema["enumNames"].as_array();
        return values
            .iter()
            .enumerate()
            .map(|(i, value)| Choice {
                value: value.clone(),
                title: names
                    .and_then(|n| n.get(i))
                    .and_then(Json::as_str)
                    .map(str::to_string),
            })
            .collect();
    }
    ["oneOf", "anyOf"]
        .iter()
        .filter_map(|key| schema[*key].as_array())
        .flatten()
        .filter_map(|entry| {
            Some(Choice {
                value: entry.get("const")?.clone(),
                title: entry["title"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// "from A to B", "at least A", "at most B", or `None` without bounds.
fn bounds(min: Option<f64>, max: Option<f64>) -> Option<String> {
    match (min, max) {
        (Some(min), Some(max)) => Some(format!("from {min} to {max}")),
        (Some(min), None) => Some(format!("at least {min}")),
        (None, Some(max)) => Some(format!("at most {max}")),
        (None, None) => None,
    }
}

/// A value as the person types it: strings bare, the rest as JSON.
fn text_of(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(schema: Json) -> Question {
        Question {
            server: "srv".into(),
            message: "Fill \u{1b}[2J in".into(),
            kind: QuestionKind::Form { schema },
        }
    }

    /// The answer to `question` given `lines`, and everything shown.
    fn answered(question: &Question, lines: &[&str]) -> (Answer, String) {
        let mut lines = lines.iter().map(|l| l.to_string());
        let mut shown = Vec::new();
        let answer = ask(question, &mut || lines.next(), &mut shown);
        (answer, String::from_utf8(shown).unwrap())
    }

    fn schema() -> Json {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Your name"},
                "check": {"type": "boolean", "title": "Agree"},
                "count": {"type": "integer", "minimum": 1, "maximum": 100, "default": 42},
                "ratio": {"type": "number"},
                "friend": {"type": "string", "enum": ["Monica", "Ross"], "default": "Monica"},
                "hero": {"type": "string", "oneOf": [{"const": "h1", "title": "Superman"},
                                                       {"const": "h2", "title": "Batman"}]},
                "pet": {"type": "string", "enum": ["p1", "p2"], "enumNames": ["Cats", "Dogs"]},
                "fish": {"type": "array", "minItems": 1, "maxItems": 2,
                         "items": {"anyOf": [{"const": "f1", "title": "Tuna"},
                                             {"const": "f2", "title": "Trout"},
                                             {"const": "f3", "title": "Cod"}]}},
                "note": {"type": "string"}
            },
            "required": ["name"]
        })
    }

    #[test]
    fn a_form_is_asked_property_by_property_with_defaults_choices_and_retries() {
        let lines = [
            "a",
            "",          // name is required: asked again
            "Ada",       // name
            "maybe",     // not a boolean: asked again
            "y",         // check
            "500",       // above the maximum: asked again
            "",          // count takes its default
            "2.5",       // ratio
            "",          // friend takes its default
            "Batman",    // hero by title
            "1",         // pet by number
            "1, 2, 3",   // too many fish
            "f1, Trout", // by value and by title
            "",          // note skipped
        ];
        let (answer, shown) = answered(&form(schema()), &lines);
        assert_eq!(
            answer,
            Answer::Accept(
                json!({"name": "Ada", "check": true, "count": 42, "ratio": 2.5, "friend": "Monica",
                       "hero": "h2", "pet": "p1", "fish": ["f1", "f2"]})
                .as_object()
                .unwrap()
                .clone()
            )
        );
        for expected in [
            "[srv] asks for input: Fill \\u{1b}[2J in",
            "  name — Your name (required): ",
            "  this one is required",
            "  check — Agree (y/n): ",
            "  type y or n",
            "  count (from 1 to 100) [42]: ",
            "  type a number from 1 to 100",
            "    1) Superman (h1)",
            "    2) Dogs (p2)",
            "  pick from 1 to 2",
            "  friend (a number or a value) [Monica]: ",
        ] {
            assert!(shown.contains(expected), "{expected:?} not in {shown}");
        }
        assert!(!shown.contains('\u{1b}'), "server text is escaped");
    }

    #[test]
    fn refusals_and_the_end_of_input_end_the_question() {
        let question = form(schema());
        assert_eq!(answered(&question, &["d"]).0, Answer::Decline);
        assert_eq!(answered(&question, &["c"]).0, Answer::Cancel);
        assert_eq!(
            answered(&question, &["a", "Ada", ":decline"]).0,
            Answer::Decline
        );
        assert_eq!(answered(&question, &["a", ":cancel"]).0, Answer::Cancel);
        assert_eq!(answered(&question, &["a", "Ada"]).0, Answer::Cancel);
        assert_eq!(answered(&question, &[]).0, Answer::Cancel);
        let (answer, shown) = answered(&question, &["what", "n"]);
        assert_eq!(answer, Answer::Decline);
        assert!(shown.contains("type a, d or c"), "{shown}");
    }

    #[test]
    fn a_url_is_shown_and_accepted_without_content() {
        let question = Question {
            server: "srv".into(),
            message: "Sign in".into(),
            kind: QuestionKind::Url {
                url: "https://example.com/auth?x=1".into(),
            },
        };
        let (answer, shown) = answered(&question, &["a"]);
        assert_eq!(answer, Answer::Accept(Map::new()));
        assert!(
            shown.contains("[srv] asks you to open a URL: Sign in\n  https://example.com/auth?x=1"),
            "{shown}"
        );
        assert_eq!(answered(&question, &["c"]).0, Answer::Cancel);
    }
}
