//! Grammar-constrained decoding: before each token is drawn, the tokens that cannot continue the
//! grammar get a logit of −∞, so the output always parses. llguidance (the library vLLM, SGLang and
//! llama.cpp use) computes the masks from a Lark grammar (`chat::grammar` writes Qwen3's) over a trie
//! of the vocabulary's bytes.

use crate::chat::Tokenizer;
use anyhow::{Context, Result, anyhow};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

/// A grammar the request's output must follow that cannot be compiled (an unsupported schema
/// keyword, a malformed schema): the client's mistake, unlike the engine's errors.
#[derive(Debug)]
pub struct GrammarError(pub String);

impl std::fmt::Display for GrammarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GrammarError {}

/// Compiles grammars for one model: its vocabulary as llguidance's token trie, built once (a
/// vocabulary of 152k tokens takes a moment) and shared by every constraint.
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// `vocab_size` is the model's (its logits' length, which may exceed the tokenizer's);
    /// `stop_ids` are the tokens that end a turn, which a complete grammar allows.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, stop_ids: &[u32]) -> Result<Self> {
        // A control token matches no text; the trie knows it by its marked name.
        let marked = |name: &[u8]| [&[TokTrie::SPECIAL_TOKEN_MARKER][..], name].concat();
        let mut words: Vec<Vec<u8>> = tokenizer
            .vocabulary()?
            .into_iter()
            .enumerate()
            .map(|(id, (bytes, special))| match (special, bytes.is_empty()) {
                (_, true) => marked(format!("[{id}]").as_bytes()),
                (true, false) => marked(&bytes),
                (false, false) => bytes,
            })
            .collect();
        while words.len() < vocab_size {
            words.push(marked(format!("[{}]", words.len()).as_bytes()));
        }
        let eos = *stop_ids
            .first()
            .context("constrained decoding needs the model's end-of-turn token")?;
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(stop_ids);
        let env: TokEnv = Arc::new(Vocabulary {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// A fresh constraint for one generation following `lark` (llguidance's Lark dialect); a grammar
    /// that does not compile is a `GrammarError`.
    pub fn constraint(&self, lark: &str) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark.to_string()))
            .map_err(|e| GrammarError(format!("{e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(GrammarError(error).into());
        }
        Ok(Constraint { matcher })
    }
}

/// The vocabulary as llguidance sees it: the trie, and the tokenizer for text it must tokenize.
struct Vocabulary {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer.encode(text).unwrap_or_default()
        })
    }
}

/// The state of one constrained generation.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    /// Sets the logit of every token the grammar does not allow next to −∞; once the grammar is
    /// complete only the end-of-turn tokens remain.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| anyhow!("constrained decoding failed: {e}"))?;
        let mut any = false;
        for (id, logit) in logits.iter_mut().enumerate() {
            if allowed.is_allowed(id as TokenId) {
                any |= !logit.is_nan();
            } else {
                *logit = f32::NEG_INFINITY;
            }
        }
        anyhow::ensure!(
            any,
            "constrained decoding failed: no token of the model's vocabulary continues the grammar"
        );
        Ok(())
    }

    /// Advances past the token drawn.
    pub fn commit(&mut self, id: u32) -> Result<()> {
        self.matcher
            .consume_token(id)
            .map_err(|e| anyhow!("constrained decoding failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::AnswerFormat;
    use serde_json::{Value as Json, json};

    const IM_END: u32 = 151645;

    /// The Qwen3 tokenizer and its grammars.
    struct Fixture {
        tokenizer: Tokenizer,
        grammars: Grammars,
    }

    fn fixture() -> Fixture {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/qwen3-tokenizer"
        );
        let tokenizer = Tokenizer::from_model_dir(std::path::Path::new(dir)).unwrap();
        let grammars = Grammars::new(&tokenizer, 151936, &[IM_END, 151643]).unwrap();
        Fixture {
            tokenizer,
            grammars,
        }
    }

    impl Fixture {
        /// Whether the grammar lets the model write `text` (as the tokenizer splits it), then end.
        fn allows(&self, format: &AnswerFormat, thinking: bool, text: &str) -> bool {
            let mut constraint = self.grammars.constraint(&format.grammar(thinking)).unwrap();
            let mut logits = vec![0f32; 151936];
            let ids = self.tokenizer.encode(text).unwrap();
            for id in ids.into_iter().chain([IM_END]) {
                logits.fill(0.0);
                constraint.mask(&mut logits).unwrap();
                if logits[id as usize].is_infinite() {
                    return false;
                }
                if id != IM_END {
                    constraint.commit(id).unwrap();
                }
            }
            true
        }
    }

    fn weather() -> Json {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    fn time() -> Json {
        json!({"type": "function", "function": {"name": "get_time"}})
    }

    #[test]
    fn json_answers_follow_the_schema_after_free_thinking() {
        let fixture = fixture();
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}},
                            "required": ["n"], "additionalProperties": false});
        let format = AnswerFormat::Json(Some(schema));
        let thought = "<think>\nMaybe {\"n\": \"x\"} or <tool_call>? No.\n</think>\n\n";
        assert!(fixture.allows(&format, true, &format!("{thought}{{\"n\": 42}}")));
        assert!(fixture.allows(&format, false, "{\"n\": -7}"));
        for wrong in [
            format!("{thought}{{\"n\": \"42\"}}"),
            format!("{thought}{{\"n\": 42, \"m\": 1}}"),
            format!("{thought}{{}}"),
            format!("{thought}Sure: {{\"n\": 42}}"),
            // No think block in a thinking turn: the answer would land in the reasoning.
            "{\"n\": 42}".to_string(),
        ] {
            assert!(!fixture.allows(&format, true, &wrong), "{wrong}");
        }
        let any_object = AnswerFormat::Json(None);
        assert!(fixture.allows(&any_object, false, "{\"a\": [1, {\"b\": null}]}"));
        assert!(!fixture.allows(&any_object, false, "[1]"));
        assert!(!fixture.allows(&any_object, false, "{\"a\": 1} trailing"));
    }

    #[test]
    fn forced_calls_are_qwen3_blocks_of_the_given_tools() {
        let fixture = fixture();
        let call = |name: &str, arguments: &str| {
            format!(
                "<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {arguments}}}\n</tool_call>"
            )
        };
        let paris = call("get_weather", "{\"city\": \"Paris\"}");
        let now = call("get_time", "{}");
        let required = AnswerFormat::ToolCalls {
            tools: vec![weather(), time()],
            parallel: true,
            optional: false,
        };
        assert!(fixture.allows(&required, false, &paris));
        assert!(fixture.allows(&required, false, &format!("{paris}\n{now}")));
        assert!(fixture.allows(
            &required,
            true,
            &format!("<think>\nWeather first.\n</think>\n\n{paris}")
        ));
        for wrong in [
            call("get_news", "{}"),
            call("get_weather", "{}"),
            call("get_weather", "{\"city\": 3}"),
            format!("It is sunny. {paris}"),
            String::new(),
        ] {
            assert!(!fixture.allows(&required, false, &wrong), "{wrong}");
        }
        let named = AnswerFormat::ToolCalls {
            tools: vec![time()],
            parallel: false,
            optional: false,
        };
        assert!(fixture.allows(&named, false, &now));
        assert!(!fixture.allows(&named, false, &paris));
        assert!(!fixture.allows(&named, false, &format!("{now}\n{now}")));
    }

    #[test]
    fn optional_calls_leave_text_free_until_a_call_opens() {
        let fixture = fixture();
        let auto = AnswerFormat::ToolCalls {
            tools: vec![weather()],
            parallel: false,
            optional: true,
        };
        let paris = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        for text in [
            "It is sunny {maybe}.".to_string(),
            String::new(),
            paris.to_string(),
            format!("Let me check.\n{paris}"),
        ] {
            assert!(fixture.allows(&auto, false, &text), "{text}");
        }
        assert!(fixture.allows(
            &auto,
            true,
            &format!("<think>\nA <tool_call> maybe.\n</think>\n\n{paris}")
        ));
        for wrong in [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"other\", \"arguments\": {}}\n</tool_call>",
            "Sure. <tool_call> is how I call tools.",
        ] {
            assert!(!fixture.allows(&auto, false, wrong), "{wrong}");
        }
    }

    #[test]
    fn a_schema_that_cannot_compile_is_a_grammar_error() {
        let format = AnswerFormat::Json(Some(json!({"type": "string", "pattern": "(("})));
        let error = fixture()
            .grammars
            .constraint(&format.grammar(false))
            .err()
            .unwrap();
        assert!(error.downcast_ref::<GrammarError>().is_some(), "{error:#}");
    }
}
