//! `bench --speculation`: prompt-lookup speculation against plain decoding on copy-heavy prompts, and
//! the verify pass's cost per draft length (`engine::speculation_bench` measures; this reads the
//! prompts and prints).

use super::model_cmds::read_render_request;
use anyhow::{Context, Result};
use clap::Args;
use qwen3_agent::chat::{ChatTemplate, RenderRequest, Tokenizer};
use qwen3_agent::config::check::{self, flag};
use qwen3_agent::engine::speculation::MAX_DRAFT;
use qwen3_agent::engine::speculation_bench::{compare, verify_costs};
use qwen3_agent::engine::{Engine, SamplingParams, Speculation};
use qwen3_agent::model::GenerationConfig;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

/// A passage to copy: plain prose, no repeats inside it, so drafts come from the prompt only.
const PASSAGE: &str = "The harbor town woke slowly that spring. Fishing boats with faded blue hulls \
    rocked against the pier while gulls argued over scraps near the market stalls. Marta opened her \
    bakery at six, as she had for thirty years, and set out rye loaves, almond cakes and a tray of \
    cinnamon rolls that never lasted past nine. Across the square the clockmaker adjusted the hands of \
    the tower clock, which ran four minutes fast every winter and four minutes slow every summer. \
    Children walked to the school on the hill carrying satchels stuffed with notebooks, apples and \
    the occasional frog. By noon the ferry from the island arrived with crates of oranges, two \
    bicycles, a piano wrapped in blankets and a retired sea captain who had come to see the lighthouse \
    one last time before it was painted white again.";

fn check_rounds(n: usize) -> check::Verdict {
    check::count(n, 1000)
}

/// The `bench` flags of speculation.
#[derive(Args)]
pub struct SpeculationArgs {
    /// off (the default) or prompt_lookup: how the main measurement decodes. prompt_lookup (or the
    /// bare flag) also compares both ways on copy-heavy prompts and times the verify pass for 1 to 8
    /// drafted tokens.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "prompt_lookup")]
    pub speculation: Option<Speculation>,
    /// Copy-heavy prompts for the comparison, each a messages file as `generate --messages` reads it
    /// (repeatable). Default: the instruction to repeat a passage, in the model's chat template.
    #[arg(long = "copy-messages", value_name = "FILE")]
    copy_messages: Vec<PathBuf>,
    /// Rounds of the comparison, each decoding every prompt both ways (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = flag(check_rounds))]
    rounds: usize,
}

/// The comparison's prompts as token ids, and the ids that end an answer.
pub struct CopyPrompts {
    pub prompts: Vec<Vec<u32>>,
    pub stop_ids: Vec<u32>,
}

impl SpeculationArgs {
    /// Whether bench reports on speculation (`--speculation`, bare or prompt_lookup).
    pub fn enabled(&self) -> bool {
        self.speculation == Some(Speculation::PromptLookup)
    }

    /// The copy prompts, rendered with `model`'s chat template and tokenizer.
    pub fn copy_prompts(&self, model: &Path) -> Result<CopyPrompts> {
        let tokenizer = Tokenizer::from_model_dir(model)
            .context("bench --speculation renders its copy prompts with the model's tokenizer")?;
        let template = ChatTemplate::from_model_dir(model)?;
        let requests = if self.copy_messages.is_empty() {
            vec![RenderRequest {
                messages: vec![json!({"role": "user", "content":
                    format!("Repeat the following text exactly, word for word:\n\n{PASSAGE}")})],
                enable_thinking: Some(false),
                ..Default::default()
            }]
        } else {
            self.copy_messages
                .iter()
                .map(|path| read_render_request(path))
                .collect::<Result<_>>()?
        };
        let prompts = requests
            .into_iter()
            .map(|mut request| {
                request.add_generation_prompt = true;
                tokenizer.encode(&template.render(&request)?)
            })
            .collect::<Result<_>>()?;
        let mut stop_ids = GenerationConfig::load(model)?.eos_token_ids;
        stop_ids.extend(tokenizer.eos_token_id);
        Ok(CopyPrompts { prompts, stop_ids })
    }

    /// Positions the comparison and the verify timing (drafts after the bench's prompt of
    /// `prompt_tokens`, which must be longer than the longest draft) need.
    pub fn context_needed(
        &self,
        copy: &CopyPrompts,
        prompt_tokens: usize,
        gen_tokens: usize,
    ) -> Result<usize> {
        anyhow::ensure!(
            prompt_tokens > MAX_DRAFT,
            "bench --speculation times drafts of up to {MAX_DRAFT} tokens after the prompt: use \
             --prompt-tokens {} or more",
            MAX_DRAFT + 1
        );
        let longest = copy.prompts.iter().map(Vec::len).max().unwrap_or(0);
        Ok((longest + gen_tokens).max(prompt_tokens) + MAX_DRAFT + 1)
    }

    /// Runs the comparison and the verify timing (after `context`): the fields of the JSON report,
    /// and the lines that tell them.
    pub fn report(
        &self,
        engine: &mut Engine,
        copy: &CopyPrompts,
        gen_tokens: usize,
        sampling: SamplingParams,
        context: &[u32],
    ) -> Result<(Json, String)> {
        let comparison = compare(
            engine,
            &copy.prompts,
            gen_tokens,
            sampling,
            &copy.stop_ids,
            self.rounds,
        )?;
        let (decode_ms, costs) = verify_costs(engine, context, MAX_DRAFT, self.rounds)?;
        let c = &comparison;
        let relative: Vec<String> = costs
            .iter()
            .map(|v| format!("k={} {:.2}×", v.draft_tokens, v.relative_to_decode))
            .collect();
        let text = format!(
            "speculation (prompt_lookup) on {} copy prompt(s), {} rounds, {} tokens: plain {:.1} tok/s, \
                 speculative {:.1} tok/s ({:.2}×) | acceptance {:.0}% ({} of {} drafted), {:.2} tokens \
                 per verify step ({} steps) | same ids: {}",
            c.prompts,
            c.rounds,
            c.tokens,
            c.plain_tok_per_s,
            c.speculative_tok_per_s,
            c.speedup,
            100.0 * c.acceptance_rate,
            c.accepted_tokens,
            c.drafted_tokens,
            c.tokens_per_verify_step,
            c.verify_steps,
            if c.same_ids { "yes" } else { "NO" },
        ) + &format!(
            "\nverify pass at depth {}: one decode step {:.2} ms; k drafted tokens cost {}",
            context.len(),
            decode_ms,
            relative.join(", ")
        );
        let report = json!({
            "comparison": comparison,
            "verify": {"depth": context.len(), "decode_step_ms": decode_ms, "costs": costs},
        });
        Ok((report, text))
    }
}
