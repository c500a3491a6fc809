//! Constrained decoding on a real model: for fuzzed JSON schemas and tool sets (forced or, as for
//! strict tools under `auto`, optional calls), the demo model's output, sampled at temperature 1
//! over the whole vocabulary so it goes wherever the mask lets it, always parses and validates.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use qwen3_agent::agent::assemble::{AssembleOptions, build_backend};
use qwen3_agent::backend::{Backend, BackendRequest, CallParsing};
use qwen3_agent::chat::{AnswerFormat, FinishReason, Message};
use qwen3_agent::config::load_agent;
use qwen3_agent::engine::SamplingParams;
use serde_json::{Value as Json, json};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A JSON schema with bounded strings, numbers and arrays, so every valid value fits the token budget.
fn schema() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        (0u32..12).prop_map(|n| json!({"type": "string", "maxLength": n})),
        (-50i64..50, 0i64..100).prop_map(
            |(low, span)| json!({"type": "integer", "minimum": low, "maximum": low + span})
        ),
        Just(json!({"type": "boolean"})),
        Just(json!({"type": "null"})),
        proptest::collection::btree_set("[a-z]{1,6}", 1..4)
            .prop_map(|words| json!({"enum": words.into_iter().collect::<Vec<_>>()})),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            object_of(inner.clone()),
            (inner, 0u32..3).prop_map(|(items, n)| json!({"type": "array", "items": items,
                                                          "maxItems": n})),
        ]
    })
}

/// An object schema whose properties follow `property`, some of them required, no others allowed.
fn object_of(property: impl Strategy<Value = Json>) -> impl Strategy<Value = Json> {
    (
        proptest::collection::btree_map("[a-z]{1,8}", property, 0..4),
        any::<u8>(),
    )
        .prop_map(|(properties, required)| {
            let names: Vec<&String> = properties
                .keys()
                .enumerate()
                .filter(|(i, _)| required & (1 << i) != 0)
                .map(|(_, k)| k)
                .collect();
            json!({"type": "object", "properties": properties, "required": names,
                   "additionalProperties": false})
        })
}

/// An object schema: tool parameters and most response formats are objects.
fn object_schema() -> impl Strategy<Value = Json> {
    object_of(schema())
}

fn wandering(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        presence_penalty: 0.0,
        repetition_penalty: 1.0,
        seed,
    }
}

fn demo_backend() -> Box<dyn Backend> {
    let agent = load_agent(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/agents/demo.yaml"
    )))
    .unwrap();
    let options = AssembleOptions::new(std::env::temp_dir().join("qwen3-agent-constrained-test"));
    build_backend(&agent, &options).unwrap()
}

fn valid(schema: &Json, value: &Json) -> bool {
    jsonschema::validator_for(schema).unwrap().is_valid(value)
}

#[test]
fn fuzzed_schemas_and_tools_always_give_valid_output() {
    // The runner's closures are `Fn`; the backend is used from one at a time.
    let backend = std::cell::RefCell::new(demo_backend());
    let interrupt = AtomicBool::new(false);
    let messages = [Message::user("Answer now.")];
    // A fixed stream of cases, so a run in CI is the run that passed here.
    let config = Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&(object_schema(), any::<u64>()), |(schema, seed)| {
            let format = AnswerFormat::Json(Some(schema.clone()));
            let request = BackendRequest {
                messages: &messages,
                tools: &[],
                thinking: false,
                sampling: wandering(seed),
                max_new_tokens: 600,
                stop: &[],
                interrupt: &interrupt,
                calls: CallParsing::Text,
                format: Some(&format),
                logprobs: None,
            };
            let response = backend
                .borrow_mut()
                .complete(&request, &mut |_| {})
                .unwrap();
            let content = &response.output.content;
            prop_assert_eq!(response.finish_reason, FinishReason::Stop, "{}", content);
            let value: Json = serde_json::from_str(content)
                .map_err(|e| TestCaseError::fail(format!("{e}: {content}")))?;
            prop_assert!(valid(&schema, &value), "{} against {}", value, schema);
            Ok(())
        })
        .unwrap();

    let tools = proptest::collection::vec(object_schema(), 1..4);
    runner
        .run(
            &(tools, any::<bool>(), any::<bool>(), any::<u64>()),
            |(parameters, parallel, optional, seed)| {
                let tools: Vec<Json> = parameters
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        json!({"type": "function", "function": {"name": format!("tool_{i}"),
                               "parameters": p}})
                    })
                    .collect();
                let format = AnswerFormat::ToolCalls {
                    tools: tools.clone(),
                    parallel,
                    optional,
                };
                let request = BackendRequest {
                    messages: &messages,
                    tools: &tools,
                    thinking: false,
                    sampling: wandering(seed),
                    max_new_tokens: 600,
                    stop: &[],
                    interrupt: &interrupt,
                    calls: CallParsing::CallsElseText,
                    format: Some(&format),
                    logprobs: None,
                };
                let response = backend
                    .borrow_mut()
                    .complete(&request, &mut |_| {})
                    .unwrap();
                let output = &response.output;
                for call in &output.tool_calls {
                    let index: usize = call.name["tool_".len()..].parse().unwrap();
                    let arguments = Json::Object(call.arguments.clone());
                    prop_assert!(
                        valid(&parameters[index], &arguments),
                        "{} against {}",
                        arguments,
                        parameters[index]
                    );
                }
                if optional && response.finish_reason == FinishReason::Length {
                    // Free text may use the whole budget; what it cut is not the grammar's doing.
                    return Ok(());
                }
                prop_assert_eq!(response.finish_reason, FinishReason::Stop, "{:?}", output);
                // Optional calls (strict tools under "auto") may follow text or be left out, but
                // a call the model opens is always a valid one: none is left in the text.
                prop_assert!(!output.content.contains("<tool_call>"), "{:?}", output);
                if !optional {
                    prop_assert!(output.content.trim().is_empty(), "{:?}", output);
                    prop_assert!(!output.tool_calls.is_empty(), "{:?}", output);
                }
                prop_assert!(parallel || output.tool_calls.len() <= 1, "{:?}", output);
                Ok(())
            },
        )
        .unwrap();
}
