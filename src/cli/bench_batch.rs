//! `bench --batch 1,4,8`: several sequences decoding together on the CPU engine (continuous batching),
//! one row per batch size; the library measures (`engine::batch::bench`), this prints.

use super::progress;
use anyhow::{Result, bail};
use clap::Args;
use qwen3_agent::engine::SamplingParams;
use qwen3_agent::engine::batch::{BatchOptions, Batcher, bench};
use qwen3_agent::model::{self, Device, LoadOptions};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

#[derive(Args, Debug, Default)]
pub struct BatchArgs {
    /// Measure several sequences decoding together (comma-separated counts, e.g. 1,4,8): each gets
    /// its own random prompt of --prompt-tokens and decodes --gen-tokens. CPU engine only.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch: Vec<u16>,
}

impl BatchArgs {
    pub fn enabled(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Loads the model once and measures each batch size on it.
    pub fn run(
        &self,
        dir: &Path,
        options: &LoadOptions,
        prompt_tokens: usize,
        gen_tokens: usize,
        sampling: SamplingParams,
        json: bool,
    ) -> Result<()> {
        if options.device == Device::Cuda {
            bail!(
                "--batch runs on the CPU engine only for now (the GPU engine decodes one sequence at \
                 a time); add --device cpu"
            );
        }
        let largest = usize::from(self.batch.iter().copied().max().unwrap_or(1));
        let started = Instant::now();
        let (model, context) = model::load_cpu_model(dir, options, progress::loading(dir))?;
        let load_s = started.elapsed().as_secs_f64();
        let vocab = model.config.vocab_size as u64;
        let mut batch_options = BatchOptions::for_memory(&model, context, largest);
        // Every sequence's whole run fits: the bench measures batching, not preemption.
        batch_options.pool_positions = batch_options.pool_positions.max(context * largest);
        let batcher = Batcher::start(model, batch_options)?;
        let mut rng = qwen3_agent::rng::Rng::seeded(1);
        let mut prompt = || -> Vec<u32> {
            (0..prompt_tokens)
                .map(|_| (rng.next_u64() % vocab.min(150_000)) as u32)
                .collect()
        };
        // Warm-up: page faults and the pool's first wake-up are not the batch's cost.
        bench::measure(
            &batcher,
            &[prompt()[..prompt_tokens.min(16)].to_vec()],
            4,
            sampling,
        )?;
        let mut rows = Vec::new();
        for &n in &self.batch {
            let prompts: Vec<Vec<u32>> = (0..n).map(|_| prompt()).collect();
            let run = bench::measure(&batcher, &prompts, gen_tokens, sampling)?;
            if !json {
                println!(
                    "batch {:>3} | prefill {} tok each: {:.2} tok/s in all | decode {} tok each: \
                     {:.2} tok/s in all, {:.2} per sequence | {} passes, up to {} sequences each | \
                     {:.1} s",
                    run.sequences,
                    prompt_tokens,
                    run.prefill_tok_per_s,
                    gen_tokens,
                    run.decode_tok_per_s,
                    run.per_sequence_decode_tok_per_s,
                    run.passes,
                    run.max_sequences,
                    run.wall_s
                );
            }
            rows.push(run);
        }
        let peak_rss = super::model_cmds::peak_rss_gb();
        if json {
            let report = json!({
                "model": dir.display().to_string(),
                "threads": rayon::current_num_threads(),
                "precision": options.precision,
                "load_s": load_s,
                "sampling": sampling,
                "step_tokens": batch_options.step_tokens,
                "batches": rows,
                "peak_rss_gb": peak_rss,
            });
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "load {load_s:.2}s | peak RSS {peak_rss:.2} GB | {} threads",
                rayon::current_num_threads()
            );
        }
        Ok(())
    }
}
