//! Text ↔ token ids with the model's own `tokenizer.json`, and streaming detokenization.

use anyhow::{Result, anyhow};
use std::path::Path;

/// The model's tokenizer plus the ids of the tokens the runtime must recognise.
#[derive(Clone)]
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

    /// Every token's bytes, by id, and whether it is a control token (an added token marked
    /// `special`, such as `<|im_end|>`: it stands for no text). Tags the model writes as text
    /// (`<think>`, `<tool_call>`: added but not special) are their text. Constrained decoding matches
    /// grammars against these bytes. Needs a byte-level BPE vocabulary (GPT-2's byte-to-character map,
    /// as Qwen's).
    pub fn vocabulary(&self) -> Result<Vec<(Vec<u8>, bool)>> {
        let bytes_of = byte_level_decoding();
        let added = self.inner.get_added_tokens_decoder();
        let size = self.inner.get_vocab_size(true) as u32;
        (0..size)
            .map(|id| {
                if let Some(token) = added.get(&id) {
                    return Ok((token.content.as_bytes().to_vec(), token.special));
                }
                let Some(text) = self.inner.id_to_token(id) else {
                    return Ok((Vec::new(), true));
                };
                let bytes = text
                    .chars()
                    .map(|c| bytes_of.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| {
                        anyhow!(
                            "token {id} ({text:?}) is not byte-level BPE: constrained decoding needs a \
                             byte-level vocabulary like Qwen's"
                        )
                    })?;
                Ok((bytes, false))
            })
            .collect()
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

/// GPT-2's byte-level map reversed: the character a vocabulary entry uses for each byte. Printable
/// bytes stand for themselves; the others were moved to U+0100 and up, in byte order.
fn byte_level_decoding() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut moved = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                moved += 1;
                (char::from_u32(0xFF + moved).unwrap_or_default(), b)
            }
        })
        .collect()
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
