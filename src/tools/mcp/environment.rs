//! A stdio server's environment. It gets what the official MCP SDKs give a server by default (the
//! TypeScript SDK's `getDefaultEnvironment`, the Python SDK's `get_default_environment`: a short list of
//! variables a program needs to run), the variables its `inherit_env` opts into, and its own `env` —
//! not our whole environment, where API keys and tokens live. Values are never logged.

use crate::config::{InheritEnv, expand_env};
use anyhow::Result;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::ffi::OsString;

/// The SDKs' default list for POSIX systems.
#[cfg(not(windows))]
const SDK_DEFAULT: &[&str] = &["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

/// The SDKs' default list for Windows.
#[cfg(windows)]
const SDK_DEFAULT: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
    "PROGRAMFILES",
];

/// The whole environment of a server: `ours` filtered by `inherit`, then `configured` (the spec's `env`,
/// `${VAR}` expanded with `lookup`) on top.
pub(super) fn server_environment(
    ours: impl IntoIterator<Item = (OsString, OsString)>,
    inherit: &InheritEnv,
    configured: &Map<String, Json>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<OsString, OsString>> {
    let mut environment: BTreeMap<OsString, OsString> = ours
        .into_iter()
        .filter(|(name, value)| match inherit {
            InheritEnv::All(true) => true,
            InheritEnv::Names(names) if names.iter().any(|n| name == n.as_str()) => true,
            // As the SDKs do, the default list skips values starting with "()": exported shell
            // functions, a known way to smuggle code into a child's shell (Shellshock).
            _ => {
                SDK_DEFAULT.iter().any(|d| name == d)
                    && !value.as_encoded_bytes().starts_with(b"()")
            }
        })
        .collect();
    for (key, value) in configured {
        let text = match value {
            Json::String(s) => expand_env(s, &lookup)?,
            other => other.to_string(),
        };
        environment.insert(key.into(), text.into());
    }
    Ok(environment)
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours() -> Vec<(OsString, OsString)> {
        [
            ("HOME", "/home/u"),
            ("PATH", "/usr/bin"),
            ("SOME_API_TOKEN", "secret"),
            ("OTHER", "x"),
            ("TERM", "() { :; }; echo pwned"),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn names(environment: &BTreeMap<OsString, OsString>) -> Vec<&str> {
        environment.keys().map(|k| k.to_str().unwrap()).collect()
    }

    #[test]
    fn by_default_only_the_sdk_list_passes_and_shell_functions_do_not() {
        let environment =
            server_environment(ours(), &InheritEnv::default(), &Map::new(), |_| None).unwrap();
        assert_eq!(names(&environment), ["HOME", "PATH"]);
    }

    #[test]
    fn named_variables_and_the_config_env_are_added() {
        let Json::Object(configured) = json!({"API_URL": "${BASE}/v1", "RETRIES": 3}) else {
            unreachable!()
        };
        let environment = server_environment(
            ours(),
            &InheritEnv::Names(vec!["SOME_API_TOKEN".into(), "MISSING".into()]),
            &configured,
            |name| (name == "BASE").then(|| "https://api".to_string()),
        )
        .unwrap();
        assert_eq!(
            names(&environment),
            ["API_URL", "HOME", "PATH", "RETRIES", "SOME_API_TOKEN"]
        );
        assert_eq!(environment[&OsString::from("API_URL")], "https://api/v1");
        assert_eq!(environment[&OsString::from("RETRIES")], "3");
    }

    #[test]
    fn inherit_env_true_passes_everything() {
        let environment =
            server_environment(ours(), &InheritEnv::All(true), &Map::new(), |_| None).unwrap();
        assert_eq!(environment.len(), 5);
    }

    #[test]
    fn the_config_env_overrides_an_inherited_value() {
        let Json::Object(configured) = json!({"PATH": "/opt/bin"}) else {
            unreachable!()
        };
        let environment =
            server_environment(ours(), &InheritEnv::default(), &configured, |_| None).unwrap();
        assert_eq!(environment[&OsString::from("PATH")], "/opt/bin");
    }
}
