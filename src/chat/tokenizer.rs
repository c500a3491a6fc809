//! Text ↔ token ids with the model's own `tokenizer.json`, and streaming detokenization.

use anyhow::{Result, anyhow};
use std::path::Path;

/// The model's tokenizer plus the ids of the tokens the runtime must recognise.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `eos_token` of tokenizer_config.json (`<|im_end|>` for Qwen3 chat models): ends a turn.
    pub eos_token_id: Option<u32>,
}

impl Tokenizer {
    /// Loads `tokenizer.json` (and the eos token named by `tokenizer_config.json`) from a model directory.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            anyhow::bail!(
                "{} not found: the model directory needs the tokenizer files (tokenizer.json and \
                 tokenizer_config.json) from the model's original repository",
                path.display()
            );
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        let config_path = dir.join("tokenizer_config.json");
        let eos_text = std::fs::read_to_string(&config_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|c| match &c["eos_token"] {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            });
        let eos_token_id = eos_text.and_then(|t| inner.token_to_id(&t));
        Ok(Tokenizer {
            inner,
            eos_token_id,
        })
    }

    /// Encodes rendered prompt text; special tokens written in the text (`<|im_start|>`) become their ids,
    /// as `apply_chat_template(tokenize=True)` does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow!("tokenization failed: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text, special tokens included (the output parser needs `<think>`, `<tool_call>`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| anyhow!("detokenization failed: {e}"))
    }

    /// The id of a token given by its text, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// A streaming decoder for one generation.
    pub fn incremental_decoder(&self) -> IncrementalDecoder<'_> {
        IncrementalDecoder {
            tokenizer: self,
            stream: self.inner.decode_stream(false),
            pending: Vec::new(),
        }
    }
}

/// The decoding state the `tokenizers` crate keeps between streamed ids.
type DecodeStream<'a> = tokenizers::DecodeStream<
    'a,
    tokenizers::ModelWrapper,
    tokenizers::NormalizerWrapper,
    tokenizers::PreTokenizerWrapper,
    tokenizers::PostProcessorWrapper,
    tokenizers::DecoderWrapper,
>;

/// Turns ids into text deltas as they are generated, never splitting a multi-byte character: a byte-level
/// token may hold half of a UTF-8 sequence, which decodes to U+FFFD until the rest arrives.
/// `tokenizers::DecodeStream` does the streaming; this adds `finish`, which it lacks, for a generation
/// that ends in the middle of a character.
pub struct IncrementalDecoder<'a> {
    tokenizer: &'a Tokenizer,
    stream: DecodeStream<'a>,
    /// Ids pushed since the last delta: what `finish` still owes.
    pending: Vec<u32>,
}

impl IncrementalDecoder<'_> {
    /// Adds one id; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.pending.push(id);
        match self
            .stream
            .step(id)
            .map_err(|e| anyhow!("detokenization failed: {e}"))?
        {
            Some(delta) => {
                self.pending.clear();
                Ok(delta)
            }
            None => Ok(String::new()),
        }
    }

    /// Ends the stream: whatever is still held (an incomplete character) comes out as decoded.
    pub fn finish(&mut self) -> Result<String> {
        let held = std::mem::take(&mut self.pending);
        self.tokenizer.decode(&held)
    }
}
