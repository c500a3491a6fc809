//! The output parser's rules, each checked one-shot and under chunk sizes 1, 2, 3, 7 and random chunkings.

use proptest::prelude::*;
use qwen3_agent::chat::{FinishReason, OutputParser, ParseEvent, ParsedOutput};
use serde_json::{Value as Json, json};

/// Feeds `text` in the given piece lengths (in characters) and checks the streamed deltas add up to the
/// aggregate; returns the aggregate.
fn parse_chunked(
    text: &str,
    thinking: bool,
    finish: FinishReason,
    sizes: &mut dyn FnMut() -> usize,
) -> ParsedOutput {
    let mut parser = OutputParser::new(thinking);
    let chars: Vec<char> = text.chars().collect();
    let mut events = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let end = (at + sizes().max(1)).min(chars.len());
        events.extend(parser.feed(&chars[at..end].iter().collect::<String>()));
        at = end;
    }
    events.extend(parser.finish(finish));
    let (mut reasoning, mut content, mut calls, mut errors) =
        (String::new(), String::new(), vec![], vec![]);
    for event in events {
        match event {
            ParseEvent::ReasoningDelta(d) => reasoning.push_str(&d),
            ParseEvent::ContentDelta(d) => content.push_str(&d),
            ParseEvent::ToolCall(c) => calls.push(c),
            ParseEvent::Error(e) => errors.push(e),
        }
    }
    let output = parser.into_output();
    assert_eq!(
        output.reasoning_content.as_deref().unwrap_or(""),
        reasoning,
        "reasoning deltas"
    );
    assert_eq!(output.content, content, "content deltas");
    assert_eq!(output.tool_calls, calls);
    assert_eq!(output.errors, errors);
    output
}

/// Splitmix64: a seeded source of random chunk sizes, so failures reproduce.
fn random_sizes(seed: u64, max: usize) -> impl FnMut() -> usize {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        1 + ((z ^ (z >> 31)) as usize % max)
    }
}

/// The one-shot parse, after asserting every chunking gives the same result.
fn parse_all_ways(text: &str, thinking: bool, finish: FinishReason) -> ParsedOutput {
    let one_shot = ParsedOutput::parse(text, thinking, finish);
    for size in [1, 2, 3, 7] {
        let chunked = parse_chunked(text, thinking, finish, &mut || size);
        assert_eq!(chunked, one_shot, "chunk size {size} differs for {text:?}");
    }
    for seed in 0..20 {
        let chunked = parse_chunked(text, thinking, finish, &mut random_sizes(seed, 12));
        assert_eq!(
            chunked, one_shot,
            "random chunking (seed {seed}) differs for {text:?}"
        );
    }
    one_shot
}

fn summary(out: &ParsedOutput) -> Json {
    json!({
        "reasoning_content": out.reasoning_content,
        "content": out.content,
        "tool_calls": out.tool_calls.iter().map(|c| json!({"name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
        "errors": out.errors.len(),
    })
}

fn think(text: &str) -> Json {
    summary(&parse_all_ways(text, true, FinishReason::Stop))
}

fn no_think(text: &str) -> Json {
    summary(&parse_all_ways(text, false, FinishReason::Stop))
}

#[test]
fn think_block_splits_reasoning_from_content() {
    assert_eq!(
        think("<think>\nabc\n</think>\n\nxyz"),
        json!({"reasoning_content": "abc", "content": "xyz", "tool_calls": [], "errors": 0})
    );
}

#[test]
fn close_without_open_still_splits() {
    assert_eq!(think("abc</think>xyz")["reasoning_content"], "abc");
    assert_eq!(think("abc</think>xyz")["content"], "xyz");
}

#[test]
fn no_close_is_all_reasoning() {
    let out = parse_all_ways("<think>\nstill thinking <b>", true, FinishReason::Length);
    assert_eq!(out.reasoning_content.as_deref(), Some("still thinking <b>"));
    assert_eq!(out.content, "");
}

#[test]
fn empty_think_block_gives_empty_reasoning() {
    assert_eq!(
        think("<think>\n\n</think>\n\nHello"),
        json!({"reasoning_content": "", "content": "Hello", "tool_calls": [], "errors": 0})
    );
}

#[test]
fn call_after_unclosed_thinking_is_a_call() {
    let out = think(
        "<think>\nI should check the time.\n<tool_call>\n{\"name\": \"get_current_time\", \"arguments\": {\"timezone\": \"Asia/Tokyo\"}}\n</tool_call>",
    );
    assert_eq!(out["reasoning_content"], "I should check the time.");
    assert_eq!(
        out["tool_calls"],
        json!([{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}])
    );
    assert_eq!(out["content"], "");
}

#[test]
fn call_inside_closed_thinking_is_never_a_call() {
    let text = "<think>\nMaybe <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call> no.\n</think>\n\nDone.";
    let out = think(text);
    assert_eq!(out["tool_calls"], json!([]));
    assert_eq!(
        out["reasoning_content"],
        "Maybe <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call> no."
    );
    assert_eq!(out["content"], "Done.");
}

#[test]
fn thinking_disabled_everything_is_content() {
    let out = no_think("<think>x</think>y");
    assert_eq!(out["reasoning_content"], Json::Null);
    assert_eq!(out["content"], "<think>x</think>y");
}

#[test]
fn several_blocks_are_calls_in_order_with_or_without_newlines() {
    let out = no_think(
        "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
    );
    assert_eq!(
        out["tool_calls"],
        json!([{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}])
    );
    assert_eq!(out["content"], "");
}

#[test]
fn text_around_calls_stays_content_joined_unchanged() {
    let out = think(
        "<think>\nplan\n</think>\n\nChecking.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\nAfter the call.\n",
    );
    assert_eq!(out["content"], "Checking.\n\nAfter the call.");
    assert_eq!(out["tool_calls"].as_array().unwrap().len(), 1);
}

#[test]
fn lenient_json_repairs() {
    let out = no_think("<tool_call>\n{'name': 'a', 'arguments': {'q': 'it\\'s'},}\n</tool_call>");
    assert_eq!(
        out["tool_calls"],
        json!([{"name": "a", "arguments": {"q": "it's"}}])
    );
    let out =
        no_think("<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, 2,]}\n</tool_call>");
    assert_eq!(
        out["tool_calls"],
        json!([{"name": "a", "arguments": {"x": [1, 2]}}])
    );
}

#[test]
fn string_arguments_are_unwrapped_and_parameters_accepted() {
    let out = no_think(
        "<tool_call>\n{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call><tool_call>{\"name\": \"b\", \"parameters\": {\"y\": 2}}</tool_call>",
    );
    assert_eq!(
        out["tool_calls"],
        json!([{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": 2}}])
    );
}

#[test]
fn bad_blocks_are_errors_with_raw_text_and_good_neighbours_survive() {
    let text = "<tool_call>\n{\"name\": \"ok\", \"arguments\": {}}\n</tool_call>\n<tool_call>\nnot json at all\n</tool_call>\n<tool_call>{\"arguments\": {}}</tool_call><tool_call>{\"name\": \"n\", \"arguments\": [1]}</tool_call><tool_call>{\"name\": \"s\", \"arguments\": \"plain\"}</tool_call>";
    let out = parse_all_ways(text, false, FinishReason::Stop);
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!(out.tool_calls[0].name, "ok");
    assert_eq!(out.errors.len(), 4);
    assert!(out.errors[0].contains("not json at all"));
    assert!(out.errors[1].contains("no \"name\""));
    assert!(out.errors[2].contains("must be a JSON object"));
    assert!(out.errors[3].contains("plain"));
}

#[test]
fn open_block_at_end_of_a_stopped_generation() {
    let out = parse_all_ways(
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n",
        false,
        FinishReason::Stop,
    );
    assert_eq!(out.tool_calls.len(), 1);
    let out = parse_all_ways(
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}\n",
        false,
        FinishReason::Stop,
    );
    assert_eq!(
        out.tool_calls.len(),
        0,
        "a missing brace is only repaired when </tool_call> closed the block"
    );
    assert!(out.errors[0].starts_with("unfinished tool call"));
}

#[test]
fn open_block_cut_by_length_never_runs() {
    let out = parse_all_ways(
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n",
        false,
        FinishReason::Length,
    );
    assert!(out.tool_calls.is_empty());
    assert!(out.errors[0].starts_with("truncated tool call"));
}

#[test]
fn undecided_partial_tags_at_the_end_are_text() {
    assert_eq!(no_think("abc <tool_ca")["content"], "abc <tool_ca");
    assert_eq!(think("<thi")["reasoning_content"], "<thi");
    assert_eq!(think("a</thin")["reasoning_content"], "a</thin");
    assert_eq!(think("\n\n<think>\n")["reasoning_content"], "");
}

#[test]
fn multibyte_text_streams_whole() {
    let out = think("<think>\n東京の時刻を調べる 🕐\n</think>\n\n東京は16時です。😀 Ελληνικά");
    assert_eq!(out["reasoning_content"], "東京の時刻を調べる 🕐");
    assert_eq!(out["content"], "東京は16時です。😀 Ελληνικά");
}

#[test]
fn streaming_defers_nothing_that_is_already_certain() {
    let mut parser = OutputParser::new(true);
    assert_eq!(
        parser.feed("<think>\nab"),
        vec![ParseEvent::ReasoningDelta("ab".into())]
    );
    assert_eq!(
        parser.feed("c</thi"),
        vec![ParseEvent::ReasoningDelta("c".into())]
    );
    assert_eq!(
        parser.feed("nk>\n\nHi <tool"),
        vec![ParseEvent::ContentDelta("Hi ".into())]
    );
    assert_eq!(
        parser.feed("s>"),
        vec![ParseEvent::ContentDelta("<tools>".into())]
    );
}

const FRAGMENTS: &[&str] = &[
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<",
    "</",
    "<tool",
    "think>",
    "\n",
    "\n\n",
    "{",
    "}",
    "\"name\": \"f\"",
    ", ",
    "\"arguments\": {\"a\": 1}",
    "'",
    ",",
    "x",
    "東京",
    "😀",
    " ",
    "call>",
    "[",
];

/// A server answering a request without tools leaves `<tool_call>` blocks as text, in reasoning and in
/// content, under any chunking.
#[test]
fn without_tool_parsing_blocks_stay_text_in_any_chunking() {
    let call = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    let text = format!("<think>\nmaybe <tool_call> here\n</think>\n\nSure.\n{call}");
    let chars: Vec<char> = text.chars().collect();
    for size in [1, 2, 3, 7, chars.len()] {
        let mut parser = OutputParser::new(true).text_only_calls();
        let mut events = Vec::new();
        for piece in chars.chunks(size) {
            events.extend(parser.feed(&piece.iter().collect::<String>()));
        }
        events.extend(parser.finish(FinishReason::Stop));
        let (mut reasoning, mut content) = (String::new(), String::new());
        for event in events {
            match event {
                ParseEvent::ReasoningDelta(d) => reasoning.push_str(&d),
                ParseEvent::ContentDelta(d) => content.push_str(&d),
                other => panic!("no calls or errors without tool parsing: {other:?}"),
            }
        }
        assert_eq!(reasoning, "maybe <tool_call> here", "chunks of {size}");
        assert_eq!(content, format!("Sure.\n{call}"), "chunks of {size}");
        let output = parser.into_output();
        assert_eq!(
            (output.content, output.reasoning_content),
            (content, Some(reasoning))
        );
    }
}

/// A server answering a request with tools keeps a block that is not a valid call in the content,
/// tags and all (as vLLM's hermes parser does), under any chunking; valid neighbours are still calls.
#[test]
fn malformed_calls_stay_content_for_a_server_in_any_chunking() {
    let good = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    let bad = "<tool_call>\n{\"arguments\": {}}\n</tool_call>";
    for (text, finish, calls, expected) in [
        (
            format!("Sure.\n{bad}\n{good}"),
            FinishReason::Stop,
            1,
            format!("Sure.\n{bad}"),
        ),
        (
            "<tool_call>\n{\"name\": [1]}".to_string(),
            FinishReason::Stop,
            0,
            "<tool_call>\n{\"name\": [1]}".to_string(),
        ),
        (
            format!("{good}\n<tool_call>\n{{\"name\": \"f\", \"argu"),
            FinishReason::Length,
            1,
            "<tool_call>\n{\"name\": \"f\", \"argu".to_string(),
        ),
    ] {
        let chars: Vec<char> = text.chars().collect();
        for size in [1, 2, 3, 7, chars.len()] {
            let mut parser = OutputParser::new(false).malformed_calls_as_text();
            let mut events = Vec::new();
            for piece in chars.chunks(size) {
                events.extend(parser.feed(&piece.iter().collect::<String>()));
            }
            events.extend(parser.finish(finish));
            let mut content = String::new();
            let mut called = 0;
            for event in events {
                match event {
                    ParseEvent::ContentDelta(d) => content.push_str(&d),
                    ParseEvent::ToolCall(_) => called += 1,
                    other => panic!("no errors when malformed calls are text: {other:?}"),
                }
            }
            assert_eq!(content, expected, "{text:?} in chunks of {size}");
            assert_eq!(called, calls, "{text:?} in chunks of {size}");
            let output = parser.into_output();
            assert_eq!((output.content, output.errors.len()), (content, 0));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_text_any_chunking_same_result_never_panics(
        pieces in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40),
        noise in ".{0,8}",
        seed in any::<u64>(),
        max_chunk in 1usize..10,
        thinking in any::<bool>(),
        length in any::<bool>(),
    ) {
        let text = pieces.concat() + &noise;
        let finish = if length { FinishReason::Length } else { FinishReason::Stop };
        let one_shot = ParsedOutput::parse(&text, thinking, finish);
        let chunked = parse_chunked(&text, thinking, finish, &mut random_sizes(seed, max_chunk));
        prop_assert_eq!(chunked, one_shot);
    }
}
