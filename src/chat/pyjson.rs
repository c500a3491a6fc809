//! Python-compatible text forms of template values.
//!
//! transformers renders chat templates with Jinja2, so `{{ x }}` prints Python's `str(x)` and
//! `x | tojson` prints `json.dumps(x, ensure_ascii=False)`. minijinja prints JSON-ish forms and escapes
//! HTML in its `tojson`; one differing byte changes the prompt, so both are reproduced here.

use minijinja::value::{Value, ValueKind};
use std::fmt::Write;

/// Options of Python's `json.dumps` that chat templates pass to `tojson`.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// `indent=`: None is single-line output.
    pub indent: Option<String>,
    /// `separators=(item, key)`; Python's default is `(", ", ": ")`, or `(",", ": ")` when indenting.
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
    /// `ensure_ascii=`: escape every non-ASCII character as `\uXXXX` (transformers defaults to false).
    pub ensure_ascii: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
            ensure_ascii: false,
        }
    }
}

/// `json.dumps(value, ensure_ascii=False, ...)` as Python writes it.
pub fn dumps(value: &Value, options: &DumpOptions) -> Result<String, minijinja::Error> {
    let mut out = String::new();
    dump_into(&mut out, value, options, 0)?;
    Ok(out)
}

fn dump_into(
    out: &mut String,
    value: &Value,
    options: &DumpOptions,
    depth: usize,
) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(value, "Infinity", "NaN")),
        ValueKind::String => write_json_string(
            out,
            value.as_str().unwrap_or_default(),
            options.ensure_ascii,
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', items.len(), options, depth, |out, i| {
                dump_into(out, &items[i], options, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if options.sort_keys {
                keys.sort();
            }
            write_container(out, '{', '}', keys.len(), options, depth, |out, i| {
                let key = &keys[i];
                match key.as_str() {
                    Some(s) => write_json_string(out, s, options.ensure_ascii),
                    None => write_json_string(out, &python_str(key), options.ensure_ascii),
                }
                out.push_str(&options.key_separator);
                dump_into(out, &value.get_item(key)?, options, depth + 1)
            })?;
        }
        _ => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("Object of type {} is not JSON serializable", value.kind()),
            ));
        }
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    options: &DumpOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), minijinja::Error>,
) -> Result<(), minijinja::Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&options.item_separator);
        }
        if let Some(indent) = &options.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(indent) = &options.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

/// A JSON string literal as Python's encoder writes it.
fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A number as Python prints it: integers exactly, floats as `repr(float)`.
fn python_number(value: &Value, infinity: &str, nan: &str) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    python_float_repr(f, infinity, nan)
}

/// `repr(float)`: the shortest round-trip digits, positional for exponents in [-4, 16), else
/// scientific with a signed two-digit exponent (`1e+16`, `1e-05`).
pub fn python_float_repr(f: f64, infinity: &str, nan: &str) -> String {
    if f.is_nan() {
        return nan.to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            infinity.to_string()
        } else {
            format!("-{infinity}")
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let scientific = format!("{:e}", f);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("{:e} always writes an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} writes an integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let fraction = if digits.len() > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!(
            "{sign}{}{fraction}e{exp_sign}{:02}",
            &digits[..1],
            exponent.abs()
        )
    }
}

/// Python's `str(x)`, which Jinja2 uses to print `{{ x }}`.
pub fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => python_repr(value),
    }
}

/// Python's `repr(x)` for the JSON-like values templates receive.
pub fn python_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number => python_number(value, "inf", "nan"),
        ValueKind::String => python_string_repr(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| it.map(|v| python_repr(&v)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = value
                .try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&v))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

/// `repr(str)`: single quotes unless the text holds a single quote and no double quote.
fn python_string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::value::Serde;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.25e-7, "1.25e-07"),
            (1e100, "1e+100"),
            (1.234567, "1.234567"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f, "Infinity", "NaN"), want, "{f}");
        }
    }

    #[test]
    fn dumps_matches_python_defaults() {
        let v = Value::from(Serde(serde_json::json!({
            "b": 1, "a": [true, null, 2.0, "x<&>'\"\n\u{1}é😀"], "c": {}
        })));
        assert_eq!(
            dumps(&v, &DumpOptions::default()).unwrap(),
            "{\"b\": 1, \"a\": [true, null, 2.0, \"x<&>'\\\"\\n\\u0001é😀\"], \"c\": {}}"
        );
    }

    #[test]
    fn repr_matches_python() {
        let v = Value::from(Serde(serde_json::json!({"k": ["it's", true, null, 1.5]})));
        assert_eq!(python_repr(&v), "{'k': [\"it's\", True, None, 1.5]}");
    }
}
