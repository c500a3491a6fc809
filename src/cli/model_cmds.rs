//! Commands that run or write models: `logits`, `generate`, `synth`, `quantize`, `bench`.

use super::bench_batch::BatchArgs;
use super::bench_speculation::SpeculationArgs;
use super::progress;
use anyhow::{Context, Result, bail};
use clap::Args;
use qwen3_agent::chat::{ChatTemplate, OutputParser, ParseEvent, RenderRequest, Tokenizer};
use qwen3_agent::config::check::{self, flag};
use qwen3_agent::engine::{Engine, SamplingParams, Speculation};
use qwen3_agent::model::config::RopeScaling;
use qwen3_agent::model::{
    self, Decoder, Device, GenerationConfig, KvCacheFormat, LoadOptions, Precision, bandwidth, npy,
};
use serde_json::json;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// YaRN scaling with `factor` over Qwen3's native 32768 positions.
pub fn yarn(factor: f64) -> RopeScaling {
    RopeScaling {
        rope_type: "yarn".into(),
        factor: Some(factor),
        original_max_position_embeddings: Some(32768),
        attention_factor: None,
        beta_fast: None,
        beta_slow: None,
        mscale: None,
        mscale_all_dim: None,
        truncate: None,
    }
}

/// Loads a model directory onto `options.device` with a progress bar; returns it and the load time.
pub fn load_decoder(dir: &Path, options: &LoadOptions) -> Result<(Box<dyn Decoder>, f64)> {
    let start = Instant::now();
    let decoder = model::load_decoder(dir, options, progress::loading(dir))?;
    Ok((decoder, start.elapsed().as_secs_f64()))
}

/// `--threads`: rayon's pool size (0 would mean "pick for me", which is what leaving it out does).
fn threads(v: usize) -> check::Verdict {
    check::count(v, 4096)
}

/// A model directory or hub id as a local directory, with a bar for each file it downloads.
pub fn resolve_model(spec: &Path) -> Result<PathBuf> {
    model::hub::resolve_model_dir_reporting(spec, &mut progress::downloading())
}

fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    Ok(())
}

/// Run one forward pass over token ids and write float32 logits [n_ids, vocab] as .npy.
#[derive(Args)]
pub struct LogitsArgs {
    /// Model directory (config.json + safetensors; tokenizer files not needed) or hub id.
    #[arg(long)]
    model: PathBuf,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    #[arg(long)]
    out: PathBuf,
    /// exact: f32 activations (parity with transformers); fast: int8 activations. On the GPU, fast
    /// also reads an untied f16 lm_head as int8.
    #[arg(long, value_enum, default_value = "exact")]
    precision: Precision,
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// The KV cache's format: f16, or fp8 (GPU only; half the memory per position).
    #[arg(long, value_enum, default_value = "f16")]
    kv_cache: KvCacheFormat,
    /// Run the first N ids as one forward and the rest as a second one over the cached prefix, as an
    /// agent's next round continues its history (the logits must match one forward's).
    #[arg(long, value_name = "N")]
    split_at: Option<usize>,
}

pub fn logits(mut args: LogitsArgs) -> Result<()> {
    args.model = resolve_model(&args.model)?;
    let options = LoadOptions {
        device: args.device,
        precision: args.precision,
        rope_scaling: None,
        context_length: Some(args.ids.len()),
        kv_cache: args.kv_cache,
    };
    let (mut decoder, _) = load_decoder(&args.model, &options)?;
    let vocab = decoder.config().vocab_size;
    if let Some(id) = args.ids.iter().find(|&&id| id as usize >= vocab) {
        bail!("--ids: token id {id} is outside the model's vocabulary (0..{vocab})");
    }
    let split = args.split_at.unwrap_or(0);
    if split >= args.ids.len() {
        bail!(
            "--split-at {split}: the second forward needs ids after it (there are {})",
            args.ids.len()
        );
    }
    let mut logits = Vec::new();
    if split > 0 {
        logits = decoder.forward(&args.ids[..split], true)?;
    }
    logits.extend(decoder.forward(&args.ids[split..], true)?);
    npy::write_f32(
        &args.out,
        &[args.ids.len(), decoder.config().vocab_size],
        &logits,
    )
}

/// Generate text from a prompt or a messages file, streaming it to stdout.
#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// A user message (rendered with the chat template unless --raw).
    #[arg(
        long,
        conflicts_with = "messages",
        required_unless_present = "messages"
    )]
    prompt: Option<String>,
    /// A JSON file: a list of messages, or a render request object.
    #[arg(long)]
    messages: Option<PathBuf>,
    /// Use --prompt verbatim, without the chat template.
    #[arg(long)]
    raw: bool,
    #[arg(long)]
    no_thinking: bool,
    #[arg(long, default_value_t = 512, value_parser = flag(check::tokens))]
    max_new_tokens: usize,
    #[arg(long, value_parser = flag(check::temperature))]
    temperature: Option<f32>,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, value_parser = flag(check::top_p))]
    top_p: Option<f32>,
    #[arg(long, value_parser = flag(check::min_p))]
    min_p: Option<f32>,
    #[arg(long, default_value_t = 0.0, value_parser = flag(check::presence_penalty))]
    presence_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the output contains this text (not included); repeatable.
    #[arg(long)]
    stop: Vec<String>,
    /// Enable YaRN with this factor (e.g. 4.0 for 131072 tokens on Qwen3); Qwen advises it only beyond 32K.
    #[arg(long, value_parser = flag(check::rope_factor))]
    rope_scaling_factor: Option<f64>,
    /// Context positions to allocate for the KV cache.
    #[arg(long, default_value_t = 4096, value_parser = flag(check::tokens))]
    context_length: usize,
    #[arg(long, value_parser = flag(threads))]
    threads: Option<usize>,
    /// fast: int8 activations (default); exact: f32 activations, slower. On the GPU, fast also reads
    /// an untied f16 lm_head as int8.
    #[arg(long, value_enum, default_value = "fast")]
    precision: Precision,
    /// auto: the GPU when this build has CUDA and one is present.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// The KV cache's format: f16, or fp8 (GPU only; half the memory per position).
    #[arg(long, value_enum, default_value = "f16")]
    kv_cache: KvCacheFormat,
    /// Speculative decoding: off, or prompt_lookup (drafts looked up in the prompt and output,
    /// verified several per forward pass). Default: off (`Speculation::default_for` the device).
    #[arg(long, value_enum)]
    speculation: Option<Speculation>,
    /// Print one JSON object at the end instead of streaming text.
    #[arg(long)]
    json: bool,
}

pub fn generate(mut args: GenerateArgs) -> Result<()> {
    if args.json {
        progress::quiet();
    }
    set_threads(args.threads)?;
    args.model = resolve_model(&args.model)?;
    let tokenizer = Tokenizer::from_model_dir(&args.model)?;
    let thinking = !args.no_thinking && !args.raw;
    let prompt_text = if args.raw {
        args.prompt.clone().context("--raw needs --prompt")?
    } else {
        let template = ChatTemplate::from_model_dir(&args.model)?;
        let mut request = match (&args.prompt, &args.messages) {
            (Some(p), _) => RenderRequest {
                messages: vec![json!({"role": "user", "content": p})],
                ..Default::default()
            },
            (None, Some(path)) => read_render_request(path)?,
            (None, None) => bail!("give --prompt or --messages"),
        };
        request.add_generation_prompt = true;
        if args.no_thinking {
            request.enable_thinking = Some(false);
        }
        template.render(&request)?
    };
    let prompt = tokenizer.encode(&prompt_text)?;
    let options = LoadOptions {
        device: args.device,
        precision: args.precision,
        rope_scaling: args.rope_scaling_factor.map(yarn),
        context_length: Some(args.context_length.max(prompt.len() + 1)),
        kv_cache: args.kv_cache,
    };
    let (decoder, _) = load_decoder(&args.model, &options)?;
    let generation_config = GenerationConfig::load(&args.model)?;
    let mut params = SamplingParams::for_model(thinking, &generation_config);
    params.temperature = args.temperature.unwrap_or(params.temperature);
    params.top_k = args.top_k.unwrap_or(params.top_k);
    params.top_p = args.top_p.unwrap_or(params.top_p);
    params.min_p = args.min_p.unwrap_or(params.min_p);
    params.presence_penalty = args.presence_penalty;
    params.seed = args.seed;
    let mut stop_ids = generation_config.eos_token_ids.clone();
    stop_ids.extend(tokenizer.eos_token_id);
    let mut engine = Engine::from_decoder(decoder);
    engine.set_prefill_progress(Some(progress::prefilling()));
    engine.set_speculation(
        args.speculation
            .unwrap_or_else(|| Speculation::default_for(args.device)),
    );
    let mut parser = OutputParser::new(thinking);
    let mut stdout = std::io::stdout().lock();
    let stream = !args.json;
    let (generation, text) = engine.generate_text(
        &tokenizer,
        &prompt,
        args.max_new_tokens,
        params,
        &stop_ids,
        &args.stop,
        None,
        None,
        |delta| {
            if stream {
                let _ = stdout.write_all(delta.as_bytes());
                let _ = stdout.flush();
            }
            parser.feed(delta);
        },
    )?;
    let events = parser.finish(generation.finish_reason);
    let parsed = parser.into_output();
    if stream {
        writeln!(stdout)?;
        for event in events {
            if let ParseEvent::Error(e) = event {
                eprintln!("note: {e}");
            }
        }
    } else {
        let out = json!({
            "token_ids": generation.token_ids,
            "text": text,
            "reasoning_content": parsed.reasoning_content,
            "content": parsed.content,
            "tool_calls": parsed.tool_calls,
            "finish_reason": generation.finish_reason,
            "prompt_tokens": generation.prompt_tokens,
            "timings": generation.timings,
        });
        writeln!(stdout, "{}", serde_json::to_string(&out)?)?;
    }
    Ok(())
}

/// A messages file: a JSON list of messages, or a render request object (messages, tools, ...).
pub fn read_render_request(path: &Path) -> Result<RenderRequest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if value.is_array() {
        RenderRequest::from_json(json!({"messages": value}))
    } else {
        RenderRequest::from_json(value)
    }
    .with_context(|| {
        format!(
            "{} is not a list of messages or a render request",
            path.display()
        )
    })
}

/// Write a random checkpoint with the exact names, shapes, dtypes and config of a published model.
#[derive(Args)]
pub struct SynthArgs {
    /// qwen3-8b | qwen3-0.6b | tiny
    #[arg(long)]
    preset: String,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// JSON object merged into the preset's config.json (e.g. '{"vocab_size": 512}').
    #[arg(long = "override")]
    config_override: Option<String>,
    /// Where tokenizer.json and tokenizer_config.json come from (default: the repository's fixtures).
    #[arg(long, conflicts_with = "no_tokenizer")]
    tokenizer: Option<PathBuf>,
    /// Write only config and weights (small test fixtures).
    #[arg(long)]
    no_tokenizer: bool,
}

pub fn synth(args: SynthArgs) -> Result<()> {
    let mut config = model::synth::preset_config(&args.preset)?;
    if let Some(text) = &args.config_override {
        let overrides: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).context("--override must be a JSON object")?;
        for (k, v) in overrides {
            config[k] = v;
        }
    }
    let default_tokenizer =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-tokenizer");
    let tokenizer = match args.no_tokenizer {
        true => None,
        false => args
            .tokenizer
            .or_else(|| default_tokenizer.is_dir().then_some(default_tokenizer)),
    };
    if tokenizer.is_none() && !args.no_tokenizer {
        eprintln!(
            "note: no tokenizer files copied (pass --tokenizer DIR); logits and bench still work"
        );
    }
    let start = Instant::now();
    model::synth::write_random_model(
        &args.out,
        &config,
        args.seed,
        tokenizer.as_deref(),
        &progress::writing(&args.out),
    )?;
    eprintln!(
        "wrote {} in {:.1}s",
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Quantize an fp16/bf16/fp32 checkpoint to 4-bit (round-to-nearest) in the AutoAWQ GEMM format.
#[derive(Args)]
pub struct QuantizeArgs {
    #[arg(long = "in")]
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 128)]
    group_size: usize,
    /// Largest safetensors shard in MiB.
    #[arg(long, default_value_t = 4096, value_parser = flag(|v| check::count(v, check::MAX_MEGABYTES as usize)))]
    max_shard_mib: usize,
    /// Pack the tied embedding to 4 bits as well (a qwen3-agent extension: transformers and AutoAWQ
    /// cannot load the result). For small models whose embedding is most of the file.
    #[arg(long)]
    quantize_embeddings: bool,
}

pub fn quantize(args: QuantizeArgs) -> Result<()> {
    let options = model::quantize::QuantizeOptions {
        group_size: args.group_size,
        max_shard_bytes: args.max_shard_mib << 20,
        embeddings: args.quantize_embeddings,
    };
    model::quantize::quantize_dir(
        &args.input,
        &args.out,
        &options,
        &progress::writing(&args.out),
    )?;
    eprintln!(
        "wrote {} (round-to-nearest 4-bit, group {})",
        args.out.display(),
        args.group_size
    );
    Ok(())
}

/// Measure load time, prefill and decode speed, and peak memory.
#[derive(Args)]
pub struct BenchArgs {
    #[arg(long)]
    model: PathBuf,
    /// Prompt length (random ids): prefill speed is measured over it from an empty cache, and decode
    /// then runs after these many cached tokens, so --depth N measures decode at context depth N.
    #[arg(long, visible_alias = "depth", default_value_t = 512, value_parser = flag(check::tokens))]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128, value_parser = flag(check::tokens))]
    gen_tokens: usize,
    /// Sampling temperature; 0 (the default) decodes greedily. Sampled decode uses the flags below,
    /// whose defaults are Qwen3's thinking mode (top-k 20, top-p 0.95, min-p 0).
    #[arg(long, default_value_t = 0.0, value_parser = flag(check::temperature))]
    temperature: f32,
    /// 0: no top-k (every token is a candidate).
    #[arg(long, default_value_t = 20)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95, value_parser = flag(check::top_p))]
    top_p: f32,
    #[arg(long, default_value_t = 0.0, value_parser = flag(check::min_p))]
    min_p: f32,
    #[arg(long, default_value_t = 0.0, value_parser = flag(check::presence_penalty))]
    presence_penalty: f32,
    #[arg(long, default_value_t = 1.0, value_parser = flag(check::repetition_penalty))]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_parser = flag(threads))]
    threads: Option<usize>,
    /// Also run an agent-like sequence of 4 growing prompts and report how many tokens were prefilled.
    #[arg(long)]
    agent_rounds: bool,
    /// fast: int8 activations (default); exact: f32 activations. On the GPU, fast also reads an
    /// untied f16 lm_head as int8.
    #[arg(long, value_enum, default_value = "fast")]
    precision: Precision,
    /// auto: the GPU when this build has CUDA and one is present.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// The KV cache's format: f16, or fp8 (GPU only; half the memory per position).
    #[arg(long, value_enum, default_value = "f16")]
    kv_cache: KvCacheFormat,
    /// KV cache positions (GPU memory is reported at this context); default: what the run needs.
    #[arg(long, value_parser = flag(check::tokens))]
    context_length: Option<usize>,
    /// Enable YaRN with this factor, as `generate` does (4.0: Qwen3's 131,072 positions).
    #[arg(long, value_parser = flag(check::rope_factor))]
    rope_scaling_factor: Option<f64>,
    #[command(flatten)]
    speculation: SpeculationArgs,
    #[command(flatten)]
    batch: BatchArgs,
    #[arg(long)]
    json: bool,
}

pub fn bench(mut args: BenchArgs) -> Result<()> {
    if args.json {
        progress::quiet();
    }
    set_threads(args.threads)?;
    args.model = resolve_model(&args.model)?;
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        presence_penalty: args.presence_penalty,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    if args.batch.enabled() {
        if args.speculation.enabled() || args.agent_rounds {
            bail!("--batch measures plain decoding: leave out --speculation and --agent-rounds");
        }
        let options = LoadOptions {
            device: args.device,
            precision: args.precision,
            rope_scaling: args.rope_scaling_factor.map(yarn),
            context_length: Some(
                args.context_length
                    .unwrap_or(0)
                    .max(args.prompt_tokens + args.gen_tokens + 1),
            ),
            kv_cache: args.kv_cache,
        };
        return args.batch.run(
            &args.model,
            &options,
            args.prompt_tokens,
            args.gen_tokens,
            sampling,
            args.json,
        );
    }
    let copy = match args.speculation.enabled() {
        true => Some(args.speculation.copy_prompts(&args.model)?),
        false => None,
    };
    let speculation_needed = match &copy {
        Some(c) => args
            .speculation
            .context_needed(c, args.prompt_tokens, args.gen_tokens)?,
        None => 0,
    };
    let needed =
        (args.prompt_tokens + args.gen_tokens + 1 + if args.agent_rounds { 4 * 256 } else { 0 })
            .max(speculation_needed);
    let options = LoadOptions {
        device: args.device,
        precision: args.precision,
        rope_scaling: args.rope_scaling_factor.map(yarn),
        context_length: Some(args.context_length.unwrap_or(needed).max(needed)),
        kv_cache: args.kv_cache,
    };
    let (decoder, load_s) = load_decoder(&args.model, &options)?;
    let vocab = decoder.config().vocab_size as u64;
    let mut rng = qwen3_agent::rng::Rng::seeded(1);
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|_| (rng.next_u64() % vocab.min(150000)) as u32)
        .collect();
    let mut engine = Engine::from_decoder(decoder);
    engine.set_speculation(args.speculation.speculation.unwrap_or_default());
    // Warm-up: the first pass pays for one-time setup (GPU module load, cuBLAS plans, page faults).
    let warm: Vec<u32> = (0..16).map(|i| i % vocab as u32).collect();
    engine.generate(&warm, 4, sampling, &[], None, |_| ControlFlow::Continue(()))?;
    engine.clear_cache();
    let generation = engine.generate(&prompt, args.gen_tokens, sampling, &[], None, |_| {
        ControlFlow::Continue(())
    })?;
    let t = &generation.timings;
    let mut rounds = Vec::new();
    if args.agent_rounds {
        let mut history = prompt.clone();
        for round in 0..4 {
            history.extend((0..200).map(|_| (rng.next_u64() % vocab.min(150000)) as u32));
            let g = engine.generate(&history, 8, sampling, &[], None, |_| {
                ControlFlow::Continue(())
            })?;
            rounds.push(json!({"round": round + 1, "prompt_tokens": history.len(),
                "reused_tokens": g.timings.reused_tokens, "prefilled_tokens": g.timings.prefill_tokens,
                "prefill_ms": g.timings.prefill_ms}));
            history.extend(&g.token_ids);
        }
    }
    let (speculation, speculation_text) = match &copy {
        Some(copy) => {
            let (report, text) =
                args.speculation
                    .report(&mut engine, copy, args.gen_tokens, sampling, &prompt)?;
            (Some(report), Some(text))
        }
        None => (None, None),
    };
    let gpu = engine.decoder_mut().gpu_report()?;
    // Read before the bandwidth probe, whose 1 GiB buffer is not the engine's memory.
    let peak_rss = peak_rss_gb();
    // On the CPU: the weights the engine reads per token over the read bandwidth of this pool.
    let cpu = engine
        .decoder()
        .host_decode_bytes_per_token()
        .map(|bytes| (bytes, bandwidth::read_bytes_per_s()));
    let roofline = gpu
        .as_ref()
        .map(|g| g.copy_bytes_per_s / g.checkpoint_bytes_per_token as f64)
        .or(cpu.map(|(bytes, rate)| rate / bytes as f64));
    let report = json!({
        "model": args.model.display().to_string(),
        "gpu": gpu,
        "cpu_decode_bytes_per_token": cpu.map(|(bytes, _)| bytes),
        "cpu_read_bytes_per_s": cpu.map(|(_, rate)| rate),
        "decode_roofline_tok_per_s": roofline,
        "decode_fraction_of_roofline": roofline.map(|r| t.decode_tok_per_s / r),
        "threads": rayon::current_num_threads(),
        "precision": args.precision,
        "load_s": load_s,
        "prompt_tokens": args.prompt_tokens,
        "prefill_tok_per_s": t.prefill_tok_per_s,
        "sampling": sampling,
        "gen_tokens": t.decode_tokens,
        "decode_tok_per_s": t.decode_tok_per_s,
        "device_picked_tokens": t.device_picked_tokens,
        "speculation": engine.speculation(),
        "verify_steps": t.verify_steps,
        "drafted_tokens": t.drafted_tokens,
        "accepted_tokens": t.accepted_tokens,
        "speculation_report": speculation,
        "kv_cache": args.kv_cache,
        // The ids made and decoded, so runs of two builds or two sampling paths can be compared, and
        // a run replayed through `logits`.
        "prompt_ids": prompt,
        "token_ids": generation.token_ids,
        "peak_rss_gb": peak_rss,
        "agent_rounds": rounds,
    });
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "load {:.2}s | prefill {} tok: {:.2} tok/s | decode {} tok {}: {:.2} tok/s | peak RSS {:.2} GB | {} threads",
            load_s,
            args.prompt_tokens,
            t.prefill_tok_per_s,
            t.decode_tokens,
            if sampling.is_greedy() {
                "(greedy)".to_string()
            } else {
                format!(
                    "(temperature {}, top-k {}, top-p {}, min-p {}, presence {}, repetition {})",
                    sampling.temperature,
                    sampling.top_k,
                    sampling.top_p,
                    sampling.min_p,
                    sampling.presence_penalty,
                    sampling.repetition_penalty
                )
            },
            t.decode_tok_per_s,
            report["peak_rss_gb"].as_f64().unwrap_or(0.0),
            report["threads"]
        );
        if let (Some(g), Some(r)) = (&gpu, roofline) {
            println!(
                "{} | GPU memory in use {:.2} GB (model, cache and scratch {:.2} GB) | copy {:.0} GB/s | \
                 checkpoint {:.2} GB per token → roofline {:.0} tok/s; decode is {:.0}% of it \
                 (the engine reads {:.2} GB per token)",
                g.device,
                g.memory_used_bytes as f64 / 1e9,
                g.model_bytes as f64 / 1e9,
                g.copy_bytes_per_s / 1e9,
                g.checkpoint_bytes_per_token as f64 / 1e9,
                r,
                100.0 * t.decode_tok_per_s / r,
                g.decode_bytes_per_token as f64 / 1e9
            );
        }
        if let Some(text) = speculation_text {
            println!("{text}");
        }
        if let (Some((bytes, rate)), Some(r)) = (cpu, roofline) {
            println!(
                "CPU | read bandwidth {:.1} GB/s ({} threads, 1 GiB, best of 5) | weights {:.2} GB per \
                 token → roofline {:.2} tok/s; decode is {:.0}% of it",
                rate / 1e9,
                report["threads"],
                bytes as f64 / 1e9,
                r,
                100.0 * t.decode_tok_per_s / r
            );
        }
        for r in &rounds {
            println!(
                "agent round {}: prompt {} tokens, reused {}, prefilled {} ({:.0} ms)",
                r["round"],
                r["prompt_tokens"],
                r["reused_tokens"],
                r["prefilled_tokens"],
                r["prefill_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// Peak resident memory of this process (VmHWM), in GB; 0 where /proc is unavailable.
pub fn peak_rss_gb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb * 1024.0 / 1e9)
        .unwrap_or(0.0)
}
