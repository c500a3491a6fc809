//! The Qwen3 decoder on the CPU: plain structs, `load` and `forward` over AWQ or dense weights (mapped,
//! or repacked at load for `Precision::Fast`), activations f32 (`Exact`) or int8 per group in the AWQ
//! matmuls and the lm_head (`Fast`); the embedding is a dense table or the AWQ-packed tied one.

use super::awq::AwqLinear;
use super::awq_int8::Int8AwqLinear;
use super::config::{AwqConfig, Qwen3Config};
use super::dense::{DenseMatrix, dot};
use super::int8_matrix::Int8Matrix;
use super::kv_cache::KvCache;
use super::rope::Rope;
use super::weights::Weights;
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::sync::Arc;

/// How AWQ matmuls treat activations.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// int8 activations per group and integer dot products over repacked weights (like llama.cpp's
    /// Q4_0 × Q8): several times faster; logits within 2.5% (relative L2) of transformers' on the
    /// parity fixtures (tests/model_parity.rs; BENCHMARKS.md has the measured values).
    #[default]
    Fast,
    /// f32 activations over the weights as mapped: logits within 1e-5 (relative L2) of transformers'
    /// on the parity fixtures (tests/model_parity.rs).
    Exact,
}

/// A linear layer as the checkpoint stores it.
pub enum Linear {
    Awq(AwqLinear),
    AwqInt8(Int8AwqLinear),
    Dense(DenseMatrix),
}

impl Linear {
    fn load(
        weights: &Weights,
        prefix: &str,
        inf: usize,
        outf: usize,
        awq: Option<AwqConfig>,
        precision: Precision,
    ) -> Result<Self> {
        match awq {
            Some(AwqConfig { group_size, .. }) => {
                let linear = load_awq(weights, prefix, inf, outf, group_size)?;
                Ok(match precision {
                    Precision::Exact => Linear::Awq(linear),
                    Precision::Fast => Linear::AwqInt8(Int8AwqLinear::from_awq(linear)),
                })
            }
            None => {
                let w = weights.get(&format!("{prefix}.weight"), &[outf, inf])?;
                Ok(Linear::Dense(DenseMatrix::from_tensor(&w, outf, inf)?))
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Linear::Awq(l) => l.bytes(),
            Linear::AwqInt8(l) => l.bytes(),
            Linear::Dense(l) => l.bytes(),
        }
    }

    fn forward(&self, x: &[f32], m: usize, y: &mut [f32]) {
        match self {
            Linear::Awq(l) => l.forward(x, m, y),
            Linear::AwqInt8(l) => l.forward(x, m, y),
            Linear::Dense(l) => l.matmul(x, m, y),
        }
    }
}

fn load_awq(
    weights: &Weights,
    prefix: &str,
    inf: usize,
    outf: usize,
    group_size: usize,
) -> Result<AwqLinear> {
    if !inf.is_multiple_of(group_size) || !outf.is_multiple_of(8) {
        bail!("{prefix}: {inf}×{outf} cannot be AWQ-packed with group size {group_size}");
    }
    let groups = inf / group_size;
    let qweight = weights
        .get(&format!("{prefix}.qweight"), &[inf, outf / 8])?
        .mapped_u32()?;
    let qzeros = weights
        .get(&format!("{prefix}.qzeros"), &[groups, outf / 8])?
        .mapped_u32()?;
    let scales = weights
        .get(&format!("{prefix}.scales"), &[groups, outf])?
        .mapped_f16()?;
    Ok(AwqLinear::new(
        inf, outf, group_size, qweight, qzeros, scales,
    ))
}

/// The token embedding: a dense table, or an AWQ-packed tied one where token i is column i.
enum Embedding {
    Dense(Arc<DenseMatrix>),
    Packed(AwqLinear),
}

impl Embedding {
    fn row_into(&self, id: usize, out: &mut [f32]) {
        match self {
            Embedding::Dense(table) => table.row_into(id, out),
            Embedding::Packed(table) => table.column_into(id, out),
        }
    }
}

struct Layer {
    input_norm: Vec<f32>,
    post_attention_norm: Vec<f32>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// Qwen3ForCausalLM.
pub struct Qwen3 {
    pub config: Qwen3Config,
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    lm_head: LmHead,
    rope: Rope,
}

/// The output projection: dense (shared with the embedding when tied), int8 for `Precision::Fast`, or
/// the AWQ-packed tied embedding used as a linear layer.
enum LmHead {
    Dense(Arc<DenseMatrix>),
    Int8(Int8Matrix),
    Packed(Linear),
}

fn norm_weight(weights: &Weights, name: &str, len: usize) -> Result<Vec<f32>> {
    weights.get(name, &[len])?.to_f32()
}

impl Qwen3 {
    /// Loads every tensor (checking names and shapes against config.json). `progress(done, total)`
    /// counts steps: one per layer (after its repacking), then one for the embedding and lm_head
    /// (whose int8 conversion under `Fast` is the longest single step).
    pub fn load(
        weights: &Weights,
        config: Qwen3Config,
        precision: Precision,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        let awq = config.awq()?;
        let (h, hd, inter) = (
            config.hidden_size,
            config.head_dim(),
            config.intermediate_size,
        );
        let (nh, nkv) = (config.num_attention_heads, config.num_key_value_heads);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let linear = |name: &str, inf, outf| {
                Linear::load(weights, &format!("{p}.{name}"), inf, outf, awq, precision)
            };
            layers.push(Layer {
                input_norm: norm_weight(weights, &format!("{p}.input_layernorm.weight"), h)?,
                post_attention_norm: norm_weight(
                    weights,
                    &format!("{p}.post_attention_layernorm.weight"),
                    h,
                )?,
                q_proj: linear("self_attn.q_proj", h, nh * hd)?,
                k_proj: linear("self_attn.k_proj", h, nkv * hd)?,
                v_proj: linear("self_attn.v_proj", h, nkv * hd)?,
                o_proj: linear("self_attn.o_proj", nh * hd, h)?,
                q_norm: norm_weight(weights, &format!("{p}.self_attn.q_norm.weight"), hd)?,
                k_norm: norm_weight(weights, &format!("{p}.self_attn.k_norm.weight"), hd)?,
                gate_proj: linear("mlp.gate_proj", h, inter)?,
                up_proj: linear("mlp.up_proj", h, inter)?,
                down_proj: linear("mlp.down_proj", inter, h)?,
            });
            progress(i + 1, config.num_hidden_layers + 1);
        }
        let norm = norm_weight(weights, "model.norm.weight", h)?;
        let (embed_tokens, lm_head) = match awq {
            Some(a) if a.quantized_embeddings => (
                Embedding::Packed(load_awq(
                    weights,
                    "model.embed_tokens",
                    h,
                    config.vocab_size,
                    a.group_size,
                )?),
                LmHead::Packed(Linear::load(
                    weights,
                    "model.embed_tokens",
                    h,
                    config.vocab_size,
                    awq,
                    precision,
                )?),
            ),
            _ => Self::load_dense_embedding(weights, &config, precision)?,
        };
        progress(config.num_hidden_layers + 1, config.num_hidden_layers + 1);
        let rope = Rope::new(&config);
        Ok(Qwen3 {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
        })
    }

    fn load_dense_embedding(
        weights: &Weights,
        config: &Qwen3Config,
        precision: Precision,
    ) -> Result<(Embedding, LmHead)> {
        let h = config.hidden_size;
        let embed = weights.get("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let embed_tokens = Arc::new(DenseMatrix::from_tensor(&embed, config.vocab_size, h)?);
        let head_name = match (
            config.tie_word_embeddings,
            weights.contains("lm_head.weight"),
        ) {
            (true, _) => "model.embed_tokens.weight",
            (false, true) => "lm_head.weight",
            (false, false) => {
                bail!("lm_head.weight is missing and config.json does not set tie_word_embeddings")
            }
        };
        let head = weights.get(head_name, &[config.vocab_size, h])?;
        let int8_head = match precision {
            // A tied table stays mapped for embedding lookups; quantizing it only adds memory then.
            Precision::Fast if !config.tie_word_embeddings => {
                Int8Matrix::from_f16_tensor(&head, config.vocab_size, h)?
            }
            _ => None,
        };
        let lm_head = match int8_head {
            Some(matrix) => LmHead::Int8(matrix),
            None if config.tie_word_embeddings => LmHead::Dense(embed_tokens.clone()),
            None => LmHead::Dense(Arc::new(DenseMatrix::from_tensor(
                &head,
                config.vocab_size,
                h,
            )?)),
        };
        Ok((Embedding::Dense(embed_tokens), lm_head))
    }

    /// Weight bytes one decoded token reads: every layer's matrices and norms, the final norm and the
    /// lm_head (the embedding row is negligible): the numerator of decode's bandwidth roofline.
    pub fn decode_bytes_per_token(&self) -> usize {
        let floats = |v: &Vec<f32>| std::mem::size_of_val(&v[..]);
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                [
                    &l.q_proj,
                    &l.k_proj,
                    &l.v_proj,
                    &l.o_proj,
                    &l.gate_proj,
                    &l.up_proj,
                    &l.down_proj,
                ]
                .iter()
                .map(|m| m.bytes())
                .sum::<usize>()
                    + floats(&l.input_norm)
                    + floats(&l.post_attention_norm)
                    + floats(&l.q_norm)
                    + floats(&l.k_norm)
            })
            .sum();
        let lm_head = match &self.lm_head {
            LmHead::Dense(m) => m.bytes(),
            LmHead::Int8(m) => m.bytes(),
            LmHead::Packed(l) => l.bytes(),
        };
        layers + floats(&self.norm) + lm_head
    }

    /// Bytes one cached position takes (keys and values of every layer, f32).
    pub fn kv_bytes_per_position(&self) -> usize {
        let c = &self.config;
        2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim() * std::mem::size_of::<f32>()
    }

    /// A cache sized for `capacity` positions.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(
            c.num_hidden_layers,
            c.num_key_value_heads,
            c.head_dim(),
            capacity,
        )
    }

    /// Runs `ids` at the positions after those in `cache`, appends them to it, and returns logits
    /// ([vocab] for the last id, or [ids.len(), vocab] when `all_logits`): a batch of one segment.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, all_logits: bool) -> Result<Vec<f32>> {
        let mut logits = self.forward_batch(&mut [Segment {
            ids,
            cache,
            all_logits,
        }])?;
        Ok(logits.pop().expect("one segment in, one out"))
    }

    /// Runs several sequences' new ids in one pass: every weight is read once for all their rows
    /// (decoding is bandwidth-bound, so a few sequences cost little more than one), each segment
    /// attends over its own cache. Returns each segment's logits as `forward` does. Every row is
    /// computed as it would be alone (the matmuls treat rows independently), so batching never
    /// changes a sequence's logits.
    pub fn forward_batch(&self, segments: &mut [Segment<'_>]) -> Result<Vec<Vec<f32>>> {
        // Run on a pool thread: the ~250 parallel matmuls of a decode step then start from inside the
        // pool instead of each waking it from outside (which cost tens of microseconds per call).
        let mut result = None;
        rayon::scope(|_| result = Some(self.forward_in_pool(segments)));
        result.expect("the scope ran the forward pass")
    }

    /// Checks one segment before anything runs, so a bad one leaves every cache untouched.
    fn check_segment(&self, segment: &Segment<'_>) -> Result<()> {
        let (m, start, capacity) = (
            segment.ids.len(),
            segment.cache.len(),
            segment.cache.capacity(),
        );
        if m == 0 {
            bail!("forward needs at least one token");
        }
        if start + m > capacity {
            bail!(
                "the context is full: {start} cached + {m} new tokens exceed the {capacity} positions \
                 allocated (raise context_length)"
            );
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = segment.ids.iter().find(|&&id| id as usize >= vocab) {
            bail!("token id {bad} is outside the vocabulary (size {vocab})");
        }
        Ok(())
    }

    fn forward_in_pool(&self, segments: &mut [Segment<'_>]) -> Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let (h, hd) = (c.hidden_size, c.head_dim());
        let (nh, nkv, inter) = (
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
        );
        for segment in segments.iter() {
            self.check_segment(segment)?;
        }
        // Rows of all segments, one after another; `bounds[s]..bounds[s + 1]` are segment s's.
        let mut bounds = vec![0];
        for segment in segments.iter() {
            bounds.push(bounds.last().copied().unwrap_or(0) + segment.ids.len());
        }
        let m = bounds[segments.len()];
        let rows_of = |s: usize| bounds[s]..bounds[s + 1];
        let eps = c.rms_norm_eps as f32;
        let mut hidden = vec![0f32; m * h];
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for (s, segment) in segments.iter().enumerate() {
            for (t, &id) in segment.ids.iter().enumerate() {
                let row = bounds[s] + t;
                self.embed_tokens
                    .row_into(id as usize, &mut hidden[row * h..(row + 1) * h]);
            }
            let start = segment.cache.len();
            let (c, s) = self.rope.tables(start..start + segment.ids.len());
            cos.extend(c);
            sin.extend(s);
        }
        let mut normed = vec![0f32; m * h];
        let mut q = vec![0f32; m * nh * hd];
        let mut k = vec![0f32; m * nkv * hd];
        let mut v = vec![0f32; m * nkv * hd];
        let mut attn = vec![0f32; m * nh * hd];
        let mut proj = vec![0f32; m * h];
        let mut gate = vec![0f32; m * inter];
        let mut up = vec![0f32; m * inter];
        for (li, layer) in self.layers.iter().enumerate() {
            rms_norm_rows(&hidden, &layer.input_norm, eps, &mut normed);
            layer.q_proj.forward(&normed, m, &mut q);
            layer.k_proj.forward(&normed, m, &mut k);
            layer.v_proj.forward(&normed, m, &mut v);
            let half = hd / 2;
            for (i, head) in q.chunks_exact_mut(hd).enumerate() {
                rms_norm_in_place(head, &layer.q_norm, eps);
                let t = i / nh;
                Rope::apply(
                    head,
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
            }
            for (i, head) in k.chunks_exact_mut(hd).enumerate() {
                rms_norm_in_place(head, &layer.k_norm, eps);
                let t = i / nkv;
                Rope::apply(
                    head,
                    &cos[t * half..(t + 1) * half],
                    &sin[t * half..(t + 1) * half],
                );
            }
            for (s, segment) in segments.iter_mut().enumerate() {
                let (rows, start) = (rows_of(s), segment.cache.len());
                let kv = rows.start * nkv * hd..rows.end * nkv * hd;
                segment
                    .cache
                    .write(li, start, &k[kv.clone()], &v[kv.clone()]);
                let qo = rows.start * nh * hd..rows.end * nh * hd;
                attention(
                    segment.cache,
                    li,
                    &q[qo.clone()],
                    start,
                    nh,
                    nkv,
                    hd,
                    &mut attn[qo],
                );
            }
            layer.o_proj.forward(&attn, m, &mut proj);
            hidden.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
            rms_norm_rows(&hidden, &layer.post_attention_norm, eps, &mut normed);
            layer.gate_proj.forward(&normed, m, &mut gate);
            layer.up_proj.forward(&normed, m, &mut up);
            gate.iter_mut()
                .zip(&up)
                .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
            layer.down_proj.forward(&gate, m, &mut proj);
            hidden.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
        }
        // The rows whose logits are wanted, all in one lm_head pass (its weights read once too).
        let mut wanted = Vec::new();
        for (s, segment) in segments.iter_mut().enumerate() {
            segment.cache.commit(segment.ids);
            let rows = rows_of(s);
            wanted.push(if segment.all_logits {
                rows
            } else {
                rows.end - 1..rows.end
            });
        }
        let count: usize = wanted.iter().map(|rows| rows.len()).sum();
        let mut last = Vec::with_capacity(count * h);
        for rows in &wanted {
            last.extend_from_slice(&hidden[rows.start * h..rows.end * h]);
        }
        let mut final_normed = vec![0f32; last.len()];
        rms_norm_rows(&last, &self.norm, eps, &mut final_normed);
        let vocab = c.vocab_size;
        let mut logits = vec![0f32; count * vocab];
        match &self.lm_head {
            LmHead::Dense(matrix) => matrix.matmul(&final_normed, count, &mut logits),
            LmHead::Int8(matrix) => matrix.matmul(&final_normed, count, &mut logits),
            LmHead::Packed(linear) => linear.forward(&final_normed, count, &mut logits),
        }
        if let [_] = wanted.as_slice() {
            return Ok(vec![logits]);
        }
        let mut rest = logits.as_slice();
        Ok(wanted
            .iter()
            .map(|rows| {
                let (mine, after) = rest.split_at(rows.len() * vocab);
                rest = after;
                mine.to_vec()
            })
            .collect())
    }
}

/// One sequence's part of `Qwen3::forward_batch`: its new ids, the cache they follow (and are
/// appended to), and whether every row's logits are wanted or only the last.
pub struct Segment<'a> {
    pub ids: &'a [u32],
    pub cache: &'a mut KvCache,
    pub all_logits: bool,
}

/// Qwen3RMSNorm: x / sqrt(mean(x²) + eps) · w, per row.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = xr.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = w * (v * inv);
        }
    }
}

fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (mean + eps).sqrt();
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = w * (*v * inv);
    }
}

/// Causal GQA attention of m new queries (positions start..start+m) over the cache, one task per
/// (token, head).
#[allow(clippy::too_many_arguments)]
fn attention(
    cache: &KvCache,
    layer: usize,
    q: &[f32],
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    out: &mut [f32],
) {
    let scale = 1.0 / (hd as f32).sqrt();
    let group = nh / nkv;
    out.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
        let (t, head) = (i / nh, i % nh);
        let len = start + t + 1;
        let (keys, values) = cache.head(layer, head / group, len);
        let qh = &q[i * hd..(i + 1) * hd];
        let mut scores: Vec<f32> = keys
            .chunks_exact(hd)
            .map(|kp| dot(qh, kp) * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        o.fill(0.0);
        for (s, vp) in scores.iter().zip(values.chunks_exact(hd)) {
            let w = s / total;
            o.iter_mut().zip(vp).for_each(|(a, b)| *a += w * b);
        }
    });
}

impl std::fmt::Debug for Qwen3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qwen3")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Opens a model directory: config, weights (mapped) and the model itself. `rope_scaling` replaces
/// config.json's (YaRN chosen on the command line or in an agent file).
pub fn load_dir(
    dir: &std::path::Path,
    precision: Precision,
    rope_scaling: Option<super::config::RopeScaling>,
    progress: impl FnMut(usize, usize),
) -> Result<Qwen3> {
    let mut config = Qwen3Config::load(dir)?;
    if rope_scaling.is_some() {
        config.rope_scaling = rope_scaling;
    }
    load_with_config(dir, config, precision, progress)
}

/// `load_dir` with the config already read (and adjusted) by the caller.
pub(crate) fn load_with_config(
    dir: &std::path::Path,
    config: Qwen3Config,
    precision: Precision,
    progress: impl FnMut(usize, usize),
) -> Result<Qwen3> {
    let weights = Weights::open(dir)?;
    Qwen3::load(&weights, config, precision, progress)
        .with_context(|| format!("loading the model in {}", dir.display()))
}
