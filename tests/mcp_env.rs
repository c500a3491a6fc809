//! A stdio server sees only the MCP SDKs' default variables of our environment plus what its config
//! passes, never a secret of ours unasked. In its own test binary: it sets a variable in our environment,
//! which must not race other tests' threads.

mod common;

use common::{call, everything_server, registry, sdk_server};
use qwen3_agent::config::{InheritEnv, McpServerSpec};
use serde_json::{Value as Json, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// What the official SDKs pass by default on POSIX systems.
const SDK_DEFAULT: [&str; 6] = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];
/// What a runtime sets in its own environment: Python's locale coercion (PEP 538) when no locale is set.
const RUNTIME_ADDED: [&str; 1] = ["LC_CTYPE"];

fn opted_in(mut spec: McpServerSpec) -> McpServerSpec {
    spec.inherit_env = InheritEnv::Names(vec!["SOME_API_TOKEN".into()]);
    spec.env = serde_json::from_value(json!({"FROM_CONFIG": "yes"})).unwrap();
    spec
}

/// Checks the names a server reported: the default server sees a subset of the SDK list; the opted-in
/// one also sees the token and its config's variable.
fn check(plain: &BTreeSet<String>, opted: &BTreeSet<String>) {
    assert!(!plain.contains("SOME_API_TOKEN"), "{plain:?}");
    assert!(
        plain.contains("PATH") && plain.contains("HOME"),
        "{plain:?}"
    );
    let extra: Vec<_> = plain
        .iter()
        .filter(|name| {
            !SDK_DEFAULT.contains(&name.as_str()) && !RUNTIME_ADDED.contains(&name.as_str())
        })
        .collect();
    assert!(
        extra.is_empty(),
        "variables beyond the SDK list reached the server: {extra:?}"
    );
    assert!(
        opted.contains("SOME_API_TOKEN") && opted.contains("FROM_CONFIG"),
        "{opted:?}"
    );
}

#[test]
fn a_server_sees_our_secrets_only_when_its_config_asks() {
    // SAFETY: the only test of this binary, set before any server or thread starts.
    unsafe { std::env::set_var("SOME_API_TOKEN", "secret") };
    let marker = format!("env-{}", std::process::id());
    let sdk = sdk_server(&marker);
    let (sdk_registry, failures) = registry(
        &[("plain", sdk.clone()), ("opted", opted_in(sdk))],
        Duration::from_secs(30),
    );
    assert!(failures.is_empty(), "{failures:?}");
    let names = |tool: &str| -> BTreeSet<String> {
        let output = call(&sdk_registry, tool, json!({}));
        assert!(!output.is_error, "{output:?}");
        output.text.lines().map(str::to_string).collect()
    };
    check(&names("plain-env_names"), &names("opted-env_names"));

    let Some(everything) = everything_server(&marker) else {
        return;
    };
    let (everything_registry, failures) = registry(
        &[
            ("plain", everything.clone()),
            ("opted", opted_in(everything)),
        ],
        Duration::from_secs(30),
    );
    assert!(failures.is_empty(), "{failures:?}");
    let environment = |tool: &str| -> Json {
        let output = call(&everything_registry, tool, json!({}));
        assert!(!output.is_error, "{output:?}");
        serde_json::from_str(&output.text).unwrap()
    };
    let (plain, opted) = (environment("plain-get-env"), environment("opted-get-env"));
    let keys = |env: &Json| env.as_object().unwrap().keys().cloned().collect();
    check(&keys(&plain), &keys(&opted));
    assert_eq!(opted["SOME_API_TOKEN"], "secret");
}
