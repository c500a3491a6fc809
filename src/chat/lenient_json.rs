//! Repairs for the JSON slips quantized models make in tool calls: single-quoted strings, trailing
//! commas, and (only when the block was properly closed) missing closing braces.

use serde_json::Value as Json;

/// Parses `text` after repairing it; None if it still is not JSON.
pub fn parse(text: &str, close_open_brackets: bool) -> Option<Json> {
    let repaired = repair(text, close_open_brackets)?;
    serde_json::from_str(&repaired).ok()
}

fn repair(text: &str, close_open_brackets: bool) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 4);
    let mut open_brackets = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push('"');
                let mut closed = false;
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            let escaped = chars.next()?;
                            if escaped == '\'' {
                                out.push('\'');
                            } else {
                                out.push('\\');
                                out.push(escaped);
                            }
                        }
                        s if s == c => {
                            closed = true;
                            break;
                        }
                        '"' => out.push_str("\\\""),
                        s => out.push(s),
                    }
                }
                if !closed {
                    return None;
                }
                out.push('"');
            }
            '{' | '[' => {
                open_brackets.push(if c == '{' { '}' } else { ']' });
                out.push(c);
            }
            '}' | ']' => {
                if open_brackets.pop() != Some(c) {
                    return None;
                }
                drop_trailing_comma(&mut out);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if !open_brackets.is_empty() {
        if !close_open_brackets {
            return None;
        }
        while let Some(closer) = open_brackets.pop() {
            drop_trailing_comma(&mut out);
            out.push(closer);
        }
    }
    Some(out)
}

fn drop_trailing_comma(out: &mut String) {
    let trimmed_len = out.trim_end().len();
    if out[..trimmed_len].ends_with(',') {
        out.truncate(trimmed_len - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repairs_common_slips() {
        assert_eq!(
            parse("{'a': 'it\\'s \"x\"'}", false),
            Some(json!({"a": "it's \"x\""}))
        );
        assert_eq!(
            parse("{\"a\": [1, 2,], }", false),
            Some(json!({"a": [1, 2]}))
        );
        assert_eq!(
            parse("{\"a\": {\"b\": 1}", true),
            Some(json!({"a": {"b": 1}}))
        );
        assert_eq!(parse("{\"a\": {\"b\": 1}", false), None);
        assert_eq!(parse("{\"a\": \"unterminated}", true), None);
        assert_eq!(parse("{\"a\": 1]", true), None);
    }
}
