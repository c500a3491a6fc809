//! `${VAR}` and `${VAR:-default}` in values that differ between machines (server URLs; MCP commands,
//! arguments, env and headers), so definitions can be shared without secrets or hosts in them.

use anyhow::{Result, bail};

/// Expands variables from `lookup`; an unset (or empty) variable takes its default, and one without a
/// default is an error naming it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("unclosed ${{ in {text:?}")
        };
        let (name, default) = match after[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&after[..end], None),
        };
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => bail!("environment variable {name} is not set (used in {text:?})"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_with_defaults() {
        let env = |k: &str| match k {
            "HOME" => Some("/root".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_env("${HOME}/x ${MISSING:-d} ${EMPTY:-e} $plain", env).unwrap(),
            "/root/x d e $plain"
        );
        assert!(
            expand_env("${MISSING}", env)
                .unwrap_err()
                .to_string()
                .contains("MISSING")
        );
        assert!(expand_env("${OPEN", env).is_err());
    }
}
