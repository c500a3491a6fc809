//! `chat`'s `/prompts` (the MCP servers' prompts with their arguments) and `/prompt NAME key=value …`
//! (its words parsed here; the library gets the prompt's messages). Server text is shown through
//! `printable`: it is hostile.

use super::printer::printable;
use anyhow::{Result, bail};
use serde_json::{Map, Value as Json};

/// What `/prompts` prints: one line per prompt (`server/name — title: description`), one indented line
/// per argument; "(no prompts)" when there are none.
pub fn listing(prompts: &[Json]) -> String {
    if prompts.is_empty() {
        return "(the agent's MCP servers offer no prompts)".to_string();
    }
    let text = |value: &Json| value.as_str().unwrap_or_default().to_string();
    let mut lines = Vec::new();
    for prompt in prompts {
        let server = text(&prompt["server"]);
        if let Some(error) = prompt["error"].as_str() {
            lines.push(format!("{server}: listing its prompts failed: {error}"));
            continue;
        }
        let mut line = format!("{server}/{}", text(&prompt["name"]));
        let about: Vec<String> = [&prompt["title"], &prompt["description"]]
            .into_iter()
            .map(text)
            .filter(|t| !t.is_empty())
            .collect();
        if !about.is_empty() {
            line += &format!(" — {}", about.join(": "));
        }
        lines.push(line);
        for argument in prompt["arguments"].as_array().into_iter().flatten() {
            let required = if argument["required"] == true {
                " (required)"
            } else {
                ""
            };
            let description = argument["description"]
                .as_str()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            lines.push(format!(
                "    {}{required}{description}",
                text(&argument["name"])
            ));
        }
    }
    printable(&lines.join("\n")).into_owned()
}

/// A `/prompt` command: which prompt (`server/name` or a name one server offers) and its arguments.
#[derive(Debug, PartialEq)]
pub struct PromptCall {
    pub server: Option<String>,
    pub name: String,
    pub arguments: Map<String, Json>,
}

/// Parses what follows `/prompt`: `NAME key=value …`, a value quoted with `"` or `'` when it holds
/// spaces (`city="New York"`).
pub fn parse(words: &str) -> Result<PromptCall> {
    let mut words = split(words)?.into_iter();
    let Some(first) = words.next() else {
        bail!(
            "/prompt needs a prompt's name, e.g. /prompt everything/args-prompt city=Paris (/prompts lists them)"
        );
    };
    let (server, name) = match first.split_once('/') {
        Some((server, name)) if !server.is_empty() && !name.is_empty() => {
            (Some(server.to_string()), name.to_string())
        }
        _ => (None, first),
    };
    let mut arguments = Map::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            bail!(
                "{word:?} is not key=value: give the prompt's arguments as key=value (quote values with spaces)"
            );
        };
        if key.is_empty() {
            bail!("{word:?} has no argument name before '='");
        }
        arguments.insert(key.to_string(), Json::String(value.to_string()));
    }
    Ok(PromptCall {
        server,
        name,
        arguments,
    })
}

/// Words split at unquoted whitespace; quotes group and are removed.
fn split(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    if let Some(q) = quote {
        bail!("a {q} quote is not closed");
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_prompt_command_is_a_name_and_key_value_words_with_quoted_values() {
        let call = parse(r#" everything/args-prompt city="New York" state='' "#).unwrap();
        assert_eq!(call.server.as_deref(), Some("everything"));
        assert_eq!(call.name, "args-prompt");
        assert_eq!(
            Json::Object(call.arguments),
            json!({"city": "New York", "state": ""})
        );
        let bare = parse("simple-prompt").unwrap();
        assert_eq!((bare.server, bare.name.as_str()), (None, "simple-prompt"));
        for bad in ["", "p city", "p =x", "p city=\"open"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_listing_shows_arguments_and_escapes_server_text() {
        let shown = listing(&[
            json!({"server": "s", "name": "p", "title": "T", "description": "D\u{1b}[2J",
                   "arguments": [{"name": "city", "description": "City", "required": true}, {"name": "x"}]}),
            json!({"server": "t", "error": "down"}),
        ]);
        assert_eq!(
            shown,
            "s/p — T: D\\u{1b}[2J\n    city (required): City\n    x\nt: listing its prompts failed: down"
        );
    }
}
