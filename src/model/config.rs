//! `config.json` and `generation_config.json` of a Qwen3 checkpoint.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::Path;

/// Architecture hyper-parameters, as transformers' `Qwen3Config` names them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Qwen3Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Qwen3 decouples head_dim from hidden/heads; older configs omit it.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling here instead; `load` folds it into the above.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<Json>,
    #[serde(default)]
    pub quantization_config: Option<Json>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
}

fn default_rope_theta() -> f64 {
    1_000_000.0
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_max_positions() -> usize {
    40960
}

/// YaRN context extension (`{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub attention_factor: Option<f64>,
    #[serde(default)]
    pub beta_fast: Option<f64>,
    #[serde(default)]
    pub beta_slow: Option<f64>,
    #[serde(default)]
    pub mscale: Option<f64>,
    #[serde(default)]
    pub mscale_all_dim: Option<f64>,
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// AutoAWQ GEMM quantization parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwqConfig {
    pub group_size: usize,
    /// The tied embedding is AWQ-packed too (`quantized_embeddings: true`, a qwen3-agent extension that
    /// small-hidden, large-vocabulary models such as the demo need to fit in a few megabytes).
    pub quantized_embeddings: bool,
}

impl Qwen3Config {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: a model directory needs config.json",
                path.display()
            )
        })?;
        let mut config: Qwen3Config = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a Qwen3 config", path.display()))?;
        config
            .fold_rope_parameters()
            .with_context(|| format!("in {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The AWQ settings, None for an unquantized checkpoint; any other method is an error.
    pub fn awq(&self) -> Result<Option<AwqConfig>> {
        let Some(q) = &self.quantization_config else {
            return Ok(None);
        };
        let method = q.get("quant_method").and_then(Json::as_str).unwrap_or("");
        if method != "awq" {
            bail!(
                "quantization method {method:?} is not supported: qwen3-agent runs AutoAWQ GEMM (4-bit) or \
                 unquantized fp16/bf16/fp32 checkpoints"
            );
        }
        let version = q.get("version").and_then(Json::as_str).unwrap_or("gemm");
        if !version.eq_ignore_ascii_case("gemm") {
            bail!("AWQ version {version:?} is not supported: only the GEMM packing is");
        }
        let bits = q
            .get("bits")
            .or_else(|| q.get("w_bit"))
            .and_then(Json::as_u64)
            .unwrap_or(4);
        if bits != 4 {
            bail!("AWQ with {bits} bits is not supported: only 4-bit");
        }
        let group_size = q
            .get("group_size")
            .or_else(|| q.get("q_group_size"))
            .and_then(Json::as_u64)
            .context("quantization_config has no group_size")? as usize;
        if group_size == 0 || !group_size.is_multiple_of(8) {
            bail!(
                "AWQ group_size {group_size} is not supported: it must be a positive multiple of 8"
            );
        }
        if q.get("zero_point").and_then(Json::as_bool) == Some(false) {
            bail!("AWQ without zero points is not supported");
        }
        let quantized_embeddings = q
            .get("quantized_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        if quantized_embeddings && !self.tie_word_embeddings {
            bail!(
                "quantized_embeddings needs tie_word_embeddings: the packed table is also the output layer"
            );
        }
        Ok(Some(AwqConfig {
            group_size,
            quantized_embeddings,
        }))
    }

    fn fold_rope_parameters(&mut self) -> Result<()> {
        let Some(params) = self.rope_parameters.take() else {
            return Ok(());
        };
        if let Some(theta) = params.get("rope_theta").and_then(Json::as_f64) {
            self.rope_theta = theta;
        }
        let rope_type = params
            .get("rope_type")
            .and_then(Json::as_str)
            .unwrap_or("default");
        if rope_type != "default" {
            self.rope_scaling =
                Some(serde_json::from_value(params).context("rope_parameters is malformed")?);
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            );
        }
        if let Some(scaling) = &self.rope_scaling {
            match scaling.rope_type.as_str() {
                "yarn" => {}
                "default" => {}
                other => bail!("rope_scaling type {other:?} is not supported (only \"yarn\")"),
            }
        }
        self.awq()?;
        Ok(())
    }
}

/// Sampling defaults and end-of-turn ids from `generation_config.json`.
#[derive(Debug, Clone, Default)]
pub struct GenerationConfig {
    pub eos_token_ids: Vec<u32>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
}

impl GenerationConfig {
    /// Reads the file if present; a missing file means "no defaults".
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("generation_config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let json: Json = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let eos_token_ids = match &json["eos_token_id"] {
            Json::Number(n) => n.as_u64().into_iter().map(|n| n as u32).collect(),
            Json::Array(ids) => ids
                .iter()
                .filter_map(Json::as_u64)
                .map(|n| n as u32)
                .collect(),
            _ => Vec::new(),
        };
        Ok(GenerationConfig {
            eos_token_ids,
            temperature: json["temperature"].as_f64().map(|v| v as f32),
            top_k: json["top_k"].as_u64().map(|v| v as usize),
            top_p: json["top_p"].as_f64().map(|v| v as f32),
            min_p: json["min_p"].as_f64().map(|v| v as f32),
        })
    }
}
