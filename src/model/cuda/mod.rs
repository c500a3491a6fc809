//! The Qwen3 decoder on an NVIDIA GPU (feature `cuda`): the same checkpoint and the same answers as the
//! CPU engine, with the weights, the KV cache and every activation on the device.
//!
//! Decode (one token) runs our own kernels (kernels.cu), five per AWQ layer: an int4 GEMV that reads each
//! packed weight once and computes its own input (the RMSNorm, or silu(gate) · up) for q/k/v, o, gate/up
//! and down, and one split-context attention kernel that also applies q/k-norm and RoPE, writes the cache
//! and joins its chunks; an f16 GEMV runs the lm_head.
//! Prefill dequantizes each AWQ matrix to f16 and multiplies with cuBLAS (tensor cores), attention
//! included, in chunks sized so the score matrix stays under a fixed budget.
//!
//! The CUDA libraries are loaded when the engine starts (cudarc's dynamic loading), so a binary built with
//! the feature runs on machines without a GPU until `--device cuda` is asked for.

use super::config::{AwqConfig, Qwen3Config};
use super::rope::Rope;
use super::weights::Weights;
use crate::model::decoder::{Decoder, GpuReport};
use anyhow::{Context, Result, bail, ensure};
use cudarc::cublas::{CudaBlas, result as blas, sys as blas_sys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, ValidAsZeroBits, result as driver, sys as driver_sys,
};
use cudarc::nvrtc::Ptx;
use half::f16;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kernels, compiled by build.rs with nvcc for sm_90 (plus PTX the driver can compile for newer GPUs).
const KERNELS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernels.fatbin"));

/// Most query rows one prefill chunk multiplies at once.
const MAX_CHUNK: usize = 512;
/// Elements of the f32 attention-score matrix of one chunk ([heads][chunk][context]): bounds memory at
/// long contexts by shrinking the chunk instead.
const SCORE_BUDGET: usize = 32 << 20;
/// Most rows of K one block of the decode GEMV takes (GEMV_MAX_ROWS in kernels.cu: its shared input).
const GEMV_MAX_ROWS: usize = 1024;
/// Blocks of the decode GEMV one multiprocessor holds at once (its __launch_bounds__ in kernels.cu),
/// and of its variant that joins the attention's parts (awq_gemv_attn, more registers).
const GEMV_BLOCKS_PER_SM: usize = 6;
const GEMV_ATTN_BLOCKS_PER_SM: usize = 4;
/// Hidden sizes i8_gemv takes (multiples of 512 up to I8_K in kernels.cu): an untied f16 lm_head of
/// another width stays f16.
const I8_HEAD_WIDTHS: std::ops::RangeInclusive<usize> = 512..=4096;
/// Rows of the int8 lm_head one block of i8_gemv computes (I8_ROWS_PER_BLOCK in kernels.cu).
const I8_ROWS_PER_BLOCK: usize = 64;
/// Positions one block of the decode attention covers (ATTN_CHUNK in kernels.cu).
const ATTN_CHUNK: usize = 64;
/// Set to 0 to launch every kernel only after the previous one has finished (for A/B measurements of
/// the overlap; see `CudaQwen3::overlap`).
const OVERLAP_ENV: &str = "QWEN3_AGENT_CUDA_OVERLAP";
/// Floats one extra block of `rms_norm` zeroes (the lm_head's logits would take one block 150 loops).
const ZERO_PER_BLOCK: usize = 8192;

/// A device buffer and its raw address (kernels and cuBLAS take addresses; the slice owns the memory).
struct Buf<T> {
    slice: CudaSlice<T>,
    ptr: u64,
}

impl<T: DeviceRepr + ValidAsZeroBits> Buf<T> {
    fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<Self> {
        let slice = stream
            .alloc_zeros::<T>(len.max(1))
            .with_context(|| out_of_memory(len * std::mem::size_of::<T>()))?;
        let ptr = slice.device_ptr(stream).0;
        Ok(Buf { slice, ptr })
    }

    fn from_host(stream: &Arc<CudaStream>, data: &[T]) -> Result<Self> {
        let slice = stream
            .clone_htod(data)
            .with_context(|| out_of_memory(std::mem::size_of_val(data)))?;
        let ptr = slice.device_ptr(stream).0;
        Ok(Buf { slice, ptr })
    }

    /// The address of element `index`.
    fn at(&self, index: usize) -> u64 {
        self.ptr + (index * std::mem::size_of::<T>()) as u64
    }

    fn bytes(&self) -> usize {
        self.slice.len() * std::mem::size_of::<T>()
    }
}

fn out_of_memory(bytes: usize) -> String {
    format!(
        "allocating {:.1} MiB on the GPU failed: free GPU memory or lower context_length",
        bytes as f64 / (1 << 20) as f64
    )
}

struct Kernels {
    embed_f16: CudaFunction,
    embed_awq: CudaFunction,
    rms_norm: CudaFunction,
    awq_gemv: CudaFunction,
    awq_gemv_attn: CudaFunction,
    argmax_logits: CudaFunction,
    awq_repack: CudaFunction,
    quantize_rows_i8: CudaFunction,
    i8_gemv: CudaFunction,
    awq_dequant: CudaFunction,
    dense_gemv: CudaFunction,
    qk_norm_rope: CudaFunction,
    attn_decode: CudaFunction,
    softmax_causal: CudaFunction,
    heads_to_rows: CudaFunction,
    silu_mul: CudaFunction,
}

impl Kernels {
    fn load(ctx: &Arc<CudaContext>) -> Result<Self> {
        let module = ctx.load_module(Ptx::from_binary(KERNELS.to_vec())).context(
            "loading the CUDA kernels failed: this build targets compute capability 9.0 (H100/H200) and \
             newer GPUs, with a driver for CUDA 13.0 or later",
        )?;
        let f = |name: &str| {
            module
                .load_function(name)
                .with_context(|| format!("kernel {name} is missing from the module"))
        };
        Ok(Kernels {
            embed_f16: f("embed_f16")?,
            embed_awq: f("embed_awq")?,
            rms_norm: f("rms_norm")?,
            awq_gemv: f("awq_gemv")?,
            awq_gemv_attn: f("awq_gemv_attn")?,
            argmax_logits: f("argmax_logits")?,
            awq_repack: f("awq_repack")?,
            quantize_rows_i8: f("quantize_rows_i8")?,
            i8_gemv: f("i8_gemv")?,
            awq_dequant: f("awq_dequant")?,
            dense_gemv: f("dense_gemv")?,
            qk_norm_rope: f("qk_norm_rope")?,
            attn_decode: f("attn_decode")?,
            softmax_causal: f("softmax_causal")?,
            heads_to_rows: f("heads_to_rows")?,
            silu_mul: f("silu_mul")?,
        })
    }
}

/// A kernel argument: a device address, a scalar, or one matrix of a fused GEMV.
enum Arg {
    Ptr(u64),
    Int(i32),
    Float(f32),
    Matrix(AwqMatrix),
}

impl Arg {
    /// The address of the value, as `cuLaunchKernelEx` takes each parameter.
    fn as_param(&self) -> *mut std::ffi::c_void {
        match self {
            Arg::Ptr(p) => p as *const u64 as *mut _,
            Arg::Int(i) => i as *const i32 as *mut _,
            Arg::Float(x) => x as *const f32 as *mut _,
            Arg::Matrix(m) => m as *const AwqMatrix as *mut _,
        }
    }
}

/// What the decode GEMV multiplies, computed as it reads: an f16 row, the decode attention's output
/// joined from its per-chunk parts (`chunks`: the attention's grid), silu(gate) · up (f32 rows), or
/// the RMSNorm of the f32 row `x` with `weight` (each block sums the row's squares itself), so none
/// needs a kernel of its own.
#[derive(Clone, Copy)]
enum GemvInput {
    Row(u64),
    AttentionParts { chunks: usize },
    SiluOf { gate: u64, up: u64 },
    Normed { x: u64, weight: u64 },
}

/// `struct AwqMatrix` of kernels.cu: one AWQ matrix and its output.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct AwqMatrix {
    qweight: u64,
    qzeros: u64,
    scales: u64,
    y: u64,
    n: i32,
}

// SAFETY: plain data with the C struct's layout (four addresses and an int, padded to 40 bytes).
unsafe impl DeviceRepr for AwqMatrix {}

fn int(n: usize) -> Arg {
    Arg::Int(n as i32)
}

fn grid(blocks: (usize, usize), threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.0 as u32, blocks.1 as u32, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Launches `f` on `stream`; with `overlap`, programmatic dependent launch lets it start while the
/// kernel before it runs (see `CudaQwen3::overlap`).
fn launch_on(
    stream: &CudaStream,
    f: &CudaFunction,
    cfg: LaunchConfig,
    args: &[Arg],
    overlap: bool,
) -> Result<()> {
    use driver_sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    let mut params: Vec<_> = args.iter().map(Arg::as_param).collect();
    // SAFETY: a zeroed attribute is valid C data; only the field the id names is read.
    let mut attribute: driver_sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    let config = driver_sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attribute,
        numAttrs: overlap as u32,
    };
    // SAFETY: each call site passes the arguments its kernel declares, with buffers sized by `load`;
    // `params` points into `args`, which outlives the call; the function belongs to this context.
    unsafe {
        driver_sys::cuLaunchKernelEx(
            &config,
            f.cu_function(),
            params.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .context("a CUDA kernel failed to launch")
}

/// A linear layer on the device: AWQ (qweight in the decode layout of kernels.cu), dense f16
/// [out][in], or int8 [out][in] with a scale per row and group of 128 (the untied lm_head, as the CPU
/// engine's int8_matrix.rs: half the bytes of f16 every token).
enum Linear {
    Awq {
        qweight: Buf<u32>,
        qzeros: Buf<u32>,
        scales: Buf<f16>,
        inf: usize,
        outf: usize,
        group: usize,
    },
    Dense {
        weight: Buf<f16>,
        inf: usize,
        outf: usize,
    },
    Int8 {
        weight: Buf<i8>,
        scales: Buf<f32>,
        inf: usize,
        outf: usize,
    },
}

impl Linear {
    fn load(
        stream: &Arc<CudaStream>,
        kernels: &Kernels,
        weights: &Weights,
        prefix: &str,
        (inf, outf): (usize, usize),
        awq: Option<AwqConfig>,
    ) -> Result<Self> {
        match awq {
            Some(AwqConfig { group_size, .. }) => {
                Self::load_awq(stream, kernels, weights, prefix, (inf, outf), group_size)
            }
            None => {
                let w = weights.get(&format!("{prefix}.weight"), &[outf, inf])?;
                Ok(Linear::Dense {
                    weight: Buf::from_host(stream, &to_f16(&w)?)?,
                    inf,
                    outf,
                })
            }
        }
    }

    /// Uploads an AWQ matrix, its qweight repacked on the device into the decode layout of kernels.cu.
    fn load_awq(
        stream: &Arc<CudaStream>,
        kernels: &Kernels,
        weights: &Weights,
        prefix: &str,
        (inf, outf): (usize, usize),
        group: usize,
    ) -> Result<Self> {
        ensure!(
            outf.is_multiple_of(32) && inf.is_multiple_of(32),
            "{prefix}: the CUDA kernels need in_features and out_features divisible by 32 (got \
             {inf}×{outf}); run this checkpoint with --device cpu"
        );
        ensure!(
            group.is_power_of_two() && (32..=GEMV_MAX_ROWS).contains(&group),
            "{prefix}: the CUDA kernels need an AWQ group size that is a power of two from 32 to \
             {GEMV_MAX_ROWS} (got {group}); run this checkpoint with --device cpu"
        );
        ensure!(
            inf.is_multiple_of(group),
            "{prefix}: in_features {inf} is not a multiple of the group size {group}"
        );
        let groups = inf / group;
        let qweight = weights.get(&format!("{prefix}.qweight"), &[inf, outf / 8])?;
        let qzeros = weights.get(&format!("{prefix}.qzeros"), &[groups, outf / 8])?;
        let scales = weights.get(&format!("{prefix}.scales"), &[groups, outf])?;
        let packed = Buf::from_host(stream, &qweight.mapped_u32()?)?;
        let repacked = Buf::<u32>::zeros(stream, inf * outf / 8)?;
        launch_on(
            stream,
            &kernels.awq_repack,
            grid(((inf * outf / 8).div_ceil(256), 1), 256),
            &[
                Arg::Ptr(packed.ptr),
                Arg::Ptr(repacked.ptr),
                int(inf),
                int(outf),
            ],
            false,
        )?;
        Ok(Linear::Awq {
            qweight: repacked,
            qzeros: Buf::from_host(stream, &qzeros.mapped_u32()?)?,
            scales: Buf::from_host(stream, &scales.mapped_f16()?)?,
            inf,
            outf,
            group,
        })
    }

    /// Quantizes an f16 [outf][inf] matrix on the device into an `Int8` linear.
    fn int8_from(
        stream: &Arc<CudaStream>,
        kernels: &Kernels,
        dense: &Buf<f16>,
        outf: usize,
        inf: usize,
    ) -> Result<Self> {
        let weight = Buf::<i8>::zeros(stream, outf * inf)?;
        let scales = Buf::<f32>::zeros(stream, outf * inf / 128)?;
        let warps = outf * inf / 128;
        launch_on(
            stream,
            &kernels.quantize_rows_i8,
            grid((warps.div_ceil(8), 1), 256),
            &[
                Arg::Ptr(dense.ptr),
                Arg::Ptr(weight.ptr),
                Arg::Ptr(scales.ptr),
                int(outf),
                int(inf),
            ],
            false,
        )?;
        Ok(Linear::Int8 {
            weight,
            scales,
            inf,
            outf,
        })
    }

    /// Bytes of the checkpoint's tensors behind this layer: an int8 lm_head counts as the f16 matrix it
    /// replaces (the roofline of an engine that reads the checkpoint as it is).
    fn checkpoint_bytes(&self) -> usize {
        match self {
            Linear::Int8 { inf, outf, .. } => inf * outf * 2,
            _ => self.bytes(),
        }
    }

    fn dims(&self) -> (usize, usize) {
        match self {
            Linear::Awq { inf, outf, .. }
            | Linear::Dense { inf, outf, .. }
            | Linear::Int8 { inf, outf, .. } => (*inf, *outf),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Linear::Awq {
                qweight,
                qzeros,
                scales,
                ..
            } => qweight.bytes() + qzeros.bytes() + scales.bytes(),
            Linear::Dense { weight, .. } => weight.bytes(),
            Linear::Int8 { weight, scales, .. } => weight.bytes() + scales.bytes(),
        }
    }

    /// Elements of f16 scratch that prefill needs to dequantize this layer.
    fn dequant_len(&self) -> usize {
        match self {
            Linear::Awq { inf, outf, .. } => inf * outf,
            Linear::Dense { .. } | Linear::Int8 { .. } => 0,
        }
    }
}

/// Converts any float tensor to f16 on the host (checkpoints store f16 or bf16).
fn to_f16(t: &super::weights::TensorRef<'_>) -> Result<Vec<f16>> {
    Ok(match t.dtype {
        Dtype::F16 => t.mapped_f16()?.to_vec(),
        _ => t.to_f32()?.into_iter().map(f16::from_f32).collect(),
    })
}

struct Layer {
    input_norm: Buf<f32>,
    post_attention_norm: Buf<f32>,
    q_norm: Buf<f32>,
    k_norm: Buf<f32>,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    k_cache: Buf<f16>,
    v_cache: Buf<f16>,
}

impl Layer {
    /// Whether every matrix is AWQ with one group size: the layer's decode step then runs fused.
    fn all_awq(&self) -> bool {
        let group = |l: &Linear| match l {
            Linear::Awq { group, .. } => Some(*group),
            Linear::Dense { .. } | Linear::Int8 { .. } => None,
        };
        let first = group(&self.q_proj);
        first.is_some() && self.linears().into_iter().all(|l| group(l) == first)
    }

    fn linears(&self) -> [&Linear; 7] {
        [
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.o_proj,
            &self.gate_proj,
            &self.up_proj,
            &self.down_proj,
        ]
    }
}

/// Activations of one chunk, allocated once for the largest chunk.
struct Scratch {
    ids: Buf<i32>,
    /// [start, start + m] of the running chunk, read by kernels so a decode graph serves every position.
    step: Buf<i32>,
    hidden: Buf<f32>,
    normed: Buf<f16>,
    /// q, k and v outputs back to back ([chunk][heads·hd], then k, then v), so a decode step zeroes them
    /// for the GEMV's atomics in one memset; likewise gate and up.
    qkv: Buf<f32>,
    gate_up: Buf<f32>,
    q_heads: Buf<f16>,
    attn_heads: Buf<f16>,
    attn_rows: Buf<f16>,
    act: Buf<f16>,
    scores: Buf<f32>,
    probs: Buf<f16>,
    partial: Buf<f32>,
    /// Per KV head, how many decode-attention blocks have written their part (the last one joins them).
    arrivals: Buf<u32>,
    dequant: Buf<f16>,
    final_normed: Buf<f16>,
    logits: Buf<f32>,
    /// argmax_logits' answer: the key of the largest logit.
    best_logit: Buf<u64>,
}

/// Qwen3ForCausalLM on one GPU, with its KV cache.
pub struct CudaQwen3 {
    config: Qwen3Config,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    /// The f16 [vocab][hidden] table; None when the lm_head's weights are the embedding (tied: dense
    /// [vocab][hidden], or packed [hidden][vocab] AWQ where token i is column i).
    embed: Option<Buf<f16>>,
    layers: Vec<Layer>,
    norm: Buf<f32>,
    lm_head: Linear,
    rope_cos: Buf<f32>,
    rope_sin: Buf<f32>,
    scratch: Scratch,
    tokens: Vec<u32>,
    capacity: usize,
    device_name: String,
    /// Launch kernels with programmatic dependent launch: each may start while the previous one runs
    /// and waits in the kernel for its inputs, so launch gaps and the GEMVs' weight loads overlap the
    /// small kernels before them.
    overlap: bool,
    /// Streaming multiprocessors: the decode GEMV sizes its blocks to keep them all busy.
    multiprocessors: usize,
    /// Every layer all AWQ with one group size: decode steps run `decode_layer_awq`, whose GEMVs compute
    /// the RMSNorms they read (a mixed model takes the generic path everywhere).
    fused_decode: bool,
    /// The whole decode step (embedding to logits) captured on first use and replayed for every token
    /// (~600 launches cost more CPU time than the GPU work they describe), one graph per attention grid:
    /// a power of two of 64-position chunks, so short contexts do not launch blocks for the whole cache.
    decode_graphs: BTreeMap<usize, DecodeGraph>,
}

/// The captured decode step.
struct DecodeGraph(CudaGraph);

// SAFETY: a CUDA graph belongs to its context, not to a thread; cudarc binds the context to the calling
// thread before each launch, and the engine uses the model from one thread at a time (&mut self).
unsafe impl Send for DecodeGraph {}

impl CudaQwen3 {
    /// Uploads the checkpoint to GPU `ordinal` and allocates a KV cache for `capacity` positions.
    /// `int8_head`: an untied f16 lm_head of a width i8_gemv takes is quantized to int8 per row and
    /// group of 128 (`Linear::Int8`), as the CPU engine's fast precision does.
    pub fn load(
        weights: &Weights,
        config: Qwen3Config,
        ordinal: usize,
        capacity: usize,
        int8_head: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        // cudarc panics on a missing library; check first so the user gets an answer instead.
        // SAFETY: these only try to open the libraries.
        ensure!(
            unsafe { cudarc::driver::sys::is_culib_present() },
            "libcuda.so.1 (the NVIDIA driver) was not found: install the driver, or use --device cpu"
        );
        ensure!(
            unsafe { cudarc::cublas::sys::is_culib_present() },
            "libcublas.so.13 was not found: put the CUDA 13 libraries on LD_LIBRARY_PATH (e.g. \
             /usr/local/cuda-13.0/targets/x86_64-linux/lib or the pip nvidia-cublas package's lib)"
        );
        let ctx = CudaContext::new(ordinal).with_context(|| {
            format!(
                "cannot open CUDA device {ordinal}: is an NVIDIA driver installed and a GPU visible \
                 (nvidia-smi)? libcuda.so.1 must be on the library path"
            )
        })?;
        // One stream: cudarc's cross-stream event bookkeeping would only add work to every launch.
        unsafe { ctx.disable_event_tracking() };
        let device_name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        // Not the legacy default stream: the decode step is captured into a graph, which needs another.
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        let blas = CudaBlas::new(stream.clone()).context(
            "cannot start cuBLAS: libcublas.so.13 and libcublasLt.so.13 must be on the library path \
             (LD_LIBRARY_PATH)",
        )?;
        let kernels = Kernels::load(&ctx)?;
        let multiprocessors =
            ctx.attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .context("reading the GPU's multiprocessor count")? as usize;
        let awq = config.awq()?;
        let (h, hd, inter) = (
            config.hidden_size,
            config.head_dim(),
            config.intermediate_size,
        );
        let (nh, nkv) = (config.num_attention_heads, config.num_key_value_heads);
        ensure!(
            hd <= 128 && hd.is_multiple_of(8),
            "the CUDA engine supports head_dim up to 128, in multiples of 8; this model has {hd}"
        );
        ensure!(
            nh.is_multiple_of(nkv) && nh / nkv <= 8,
            "the CUDA engine supports up to 8 query heads per KV head; this model has {nh} for {nkv}"
        );
        let norm = |name: &str, len| -> Result<Buf<f32>> {
            Buf::from_host(&stream, &weights.get(name, &[len])?.to_f32()?)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let linear = |name: &str, inf, outf| {
                Linear::load(
                    &stream,
                    &kernels,
                    weights,
                    &format!("{p}.{name}"),
                    (inf, outf),
                    awq,
                )
            };
            layers.push(Layer {
                input_norm: norm(&format!("{p}.input_layernorm.weight"), h)?,
                post_attention_norm: norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
                q_norm: norm(&format!("{p}.self_attn.q_norm.weight"), hd)?,
                k_norm: norm(&format!("{p}.self_attn.k_norm.weight"), hd)?,
                q_proj: linear("self_attn.q_proj", h, nh * hd)?,
                k_proj: linear("self_attn.k_proj", h, nkv * hd)?,
                v_proj: linear("self_attn.v_proj", h, nkv * hd)?,
                o_proj: linear("self_attn.o_proj", nh * hd, h)?,
                gate_proj: linear("mlp.gate_proj", h, inter)?,
                up_proj: linear("mlp.up_proj", h, inter)?,
                down_proj: linear("mlp.down_proj", inter, h)?,
                k_cache: Buf::zeros(&stream, nkv * capacity * hd)?,
                v_cache: Buf::zeros(&stream, nkv * capacity * hd)?,
            });
            progress(i + 1, config.num_hidden_layers);
        }
        let norm_w = norm("model.norm.weight", h)?;
        let (embed, lm_head) = match awq {
            Some(a) if a.quantized_embeddings => (
                None,
                Linear::load_awq(
                    &stream,
                    &kernels,
                    weights,
                    "model.embed_tokens",
                    (h, config.vocab_size),
                    a.group_size,
                )?,
            ),
            _ => {
                let table = weights.get("model.embed_tokens.weight", &[config.vocab_size, h])?;
                let table = Buf::from_host(&stream, &to_f16(&table)?)?;
                if config.tie_word_embeddings {
                    let lm_head = Linear::Dense {
                        weight: table,
                        inf: h,
                        outf: config.vocab_size,
                    };
                    (None, lm_head)
                } else {
                    let head = weights.get("lm_head.weight", &[config.vocab_size, h]).context(
                        "lm_head.weight is missing and config.json does not set tie_word_embeddings",
                    )?;
                    let dense = Buf::from_host(&stream, &to_f16(&head)?)?;
                    let lm_head = if head.dtype == Dtype::F16
                        && I8_HEAD_WIDTHS.contains(&h)
                        && h.is_multiple_of(512)
                        && int8_head
                    {
                        Linear::int8_from(&stream, &kernels, &dense, config.vocab_size, h)?
                    } else {
                        Linear::Dense {
                            weight: dense,
                            inf: h,
                            outf: config.vocab_size,
                        }
                    };
                    (Some(table), lm_head)
                }
            }
        };
        let (cos, sin) = Rope::new(&config).tables(0..capacity);
        let dequant = layers
            .iter()
            .flat_map(Layer::linears)
            .chain([&lm_head])
            .map(Linear::dequant_len)
            .max()
            .unwrap_or(0);
        let chunk = MAX_CHUNK.min(capacity);
        let scratch = Scratch {
            ids: Buf::zeros(&stream, chunk)?,
            step: Buf::zeros(&stream, 2)?,
            hidden: Buf::zeros(&stream, chunk * h)?,
            normed: Buf::zeros(&stream, chunk * h)?,
            qkv: Buf::zeros(&stream, chunk * (nh + 2 * nkv) * hd)?,
            gate_up: Buf::zeros(&stream, chunk * 2 * inter)?,
            q_heads: Buf::zeros(&stream, chunk * nh * hd)?,
            attn_heads: Buf::zeros(&stream, chunk * nh * hd)?,
            attn_rows: Buf::zeros(&stream, chunk * nh * hd)?,
            act: Buf::zeros(&stream, chunk * inter)?,
            scores: Buf::zeros(&stream, SCORE_BUDGET.min(nh * chunk * capacity))?,
            probs: Buf::zeros(&stream, SCORE_BUDGET.min(nh * chunk * capacity))?,
            partial: Buf::zeros(&stream, nh * capacity.div_ceil(ATTN_CHUNK) * (hd + 2))?,
            arrivals: Buf::zeros(&stream, nkv)?,
            dequant: Buf::zeros(&stream, dequant)?,
            final_normed: Buf::zeros(&stream, chunk * h)?,
            logits: Buf::zeros(&stream, config.vocab_size)?,
            best_logit: Buf::zeros(&stream, 1)?,
        };
        let fused_decode = layers.iter().all(Layer::all_awq);
        let model = CudaQwen3 {
            rope_cos: Buf::from_host(&stream, &cos)?,
            rope_sin: Buf::from_host(&stream, &sin)?,
            config,
            stream,
            blas,
            kernels,
            embed,
            layers,
            norm: norm_w,
            lm_head,
            scratch,
            tokens: Vec::with_capacity(capacity),
            capacity,
            device_name,
            overlap: std::env::var(OVERLAP_ENV).map_or(true, |v| v != "0"),
            multiprocessors,
            fused_decode,
            decode_graphs: BTreeMap::new(),
        };
        model
            .stream
            .synchronize()
            .context("uploading the weights")?;
        Ok(model)
    }

    /// The GPU's name, as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Bytes this model holds on the GPU (weights, cache, scratch); the CUDA context adds its own.
    pub fn device_bytes(&self) -> usize {
        let s = &self.scratch;
        let scratch = [
            s.ids.bytes() + s.hidden.bytes() + s.normed.bytes(),
            s.qkv.bytes() + s.step.bytes(),
            s.q_heads.bytes() + s.attn_heads.bytes() + s.attn_rows.bytes(),
            s.gate_up.bytes() + s.act.bytes(),
            s.scores.bytes() + s.probs.bytes() + s.partial.bytes() + s.dequant.bytes(),
            s.final_normed.bytes() + s.logits.bytes(),
        ]
        .iter()
        .sum::<usize>();
        let cache: usize = self
            .layers
            .iter()
            .map(|l| l.k_cache.bytes() + l.v_cache.bytes())
            .sum();
        let embed = self.embed.as_ref().map_or(0, Buf::bytes);
        self.decode_bytes_per_token() + cache + scratch + embed + self.rope_cos.bytes() * 2
    }

    /// Weight bytes one decode step reads: every linear, norm and the lm_head (the cache is extra).
    pub fn decode_bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.linears().into_iter().map(Linear::bytes).sum::<usize>()
                    + l.input_norm.bytes() * 2
                    + l.q_norm.bytes() * 2
            })
            .sum();
        layers + self.lm_head.bytes() + self.norm.bytes()
    }

    /// `decode_bytes_per_token` with the lm_head at the checkpoint's size (see `Linear::checkpoint_bytes`).
    pub fn checkpoint_bytes_per_token(&self) -> usize {
        self.decode_bytes_per_token() - self.lm_head.bytes() + self.lm_head.checkpoint_bytes()
    }

    /// Bytes read plus written per second by a 1 GiB device-to-device copy (median of 10 after a warm-up).
    pub fn measure_copy_bandwidth(&self) -> Result<f64> {
        const BYTES: usize = 1 << 30;
        let src = Buf::<u8>::zeros(&self.stream, BYTES)?;
        let dst = Buf::<u8>::zeros(&self.stream, BYTES)?;
        let mut times = Vec::new();
        for i in 0..11 {
            self.stream.synchronize()?;
            let start = std::time::Instant::now();
            // SAFETY: both buffers hold BYTES bytes.
            unsafe { driver::memcpy_dtod_async(dst.ptr, src.ptr, BYTES, self.stream.cu_stream()) }?;
            self.stream.synchronize()?;
            if i > 0 {
                times.push(start.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(2.0 * BYTES as f64 / times[times.len() / 2])
    }

    /// Launches a kernel that may overlap the one before it (see `overlap`).
    fn launch(&self, f: &CudaFunction, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
        self.launch_with(f, cfg, args, self.overlap)
    }

    fn launch_with(
        &self,
        f: &CudaFunction,
        cfg: LaunchConfig,
        args: &[Arg],
        overlap: bool,
    ) -> Result<()> {
        launch_on(&self.stream, f, cfg, args, overlap)
    }

    /// Column-major C = alpha·op(A)·op(B) + beta·C over `batch` matrices (strides in elements), f32
    /// accumulation; A and B are f16, C is f32 or f16.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        transa: bool,
        (m, n, k): (usize, usize, usize),
        a: (u64, usize, usize),
        b: (u64, usize, usize),
        c: (u64, usize, usize, bool),
        alpha: f32,
        beta: f32,
        batch: usize,
    ) -> Result<()> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        use blas_sys::cudaDataType::{CUDA_R_16F, CUDA_R_32F};
        let c_type = if c.3 { CUDA_R_32F } else { CUDA_R_16F };
        // SAFETY: the addresses and leading dimensions describe buffers allocated by `load` for these
        // shapes; alpha and beta are host scalars (cuBLAS' default pointer mode).
        unsafe {
            blas::gemm_strided_batched_ex(
                *self.blas.handle(),
                if transa { CUBLAS_OP_T } else { CUBLAS_OP_N },
                CUBLAS_OP_N,
                m as i32,
                n as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                a.0 as *const _,
                CUDA_R_16F,
                a.1 as i32,
                a.2 as i64,
                b.0 as *const _,
                CUDA_R_16F,
                b.1 as i32,
                b.2 as i64,
                &beta as *const f32 as *const _,
                c.0 as *mut _,
                c_type,
                c.1 as i32,
                c.2 as i64,
                batch as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .context("a cuBLAS matrix product failed")
    }

    /// y[m][out] = x[m][in] · W for f16 x. With one row, an AWQ layer adds into y (its blocks meet in
    /// atomics): the caller zeroes y first.
    fn linear(&self, l: &Linear, x: u64, m: usize, y: u64) -> Result<()> {
        self.linear_into(l, x, m, y, false)
    }

    /// `linear` for layers sharing their input (q/k/v, gate/up): one launch for a decode step when they
    /// are all AWQ with the same input shape.
    fn linears(&self, jobs: &[(&Linear, u64)], x: u64, m: usize) -> Result<()> {
        let shape = |l: &Linear| match l {
            Linear::Awq { inf, group, .. } => Some((*inf, *group)),
            Linear::Dense { .. } | Linear::Int8 { .. } => None,
        };
        let first = shape(jobs[0].0);
        if m == 1 && first.is_some() && jobs.iter().all(|(l, _)| shape(l) == first) {
            return self.awq_gemv(jobs, GemvInput::Row(x), (0, 0));
        }
        jobs.iter().try_for_each(|&(l, y)| self.linear(l, x, m, y))
    }

    /// One launch of the decode GEMV over up to three AWQ matrices with the same input; it also zeroes
    /// `zero` (address, f32 count) once the kernels before it have finished: a later GEMV's outputs.
    /// It adds into its outputs: the caller zeroes them, or passes the residual row.
    fn awq_gemv(
        &self,
        jobs: &[(&Linear, u64)],
        input: GemvInput,
        zero: (u64, usize),
    ) -> Result<()> {
        let mut matrices = [AwqMatrix::default(); 3];
        let (mut inf, mut group) = (0, 0);
        for (slot, &(l, y)) in matrices.iter_mut().zip(jobs) {
            let Linear::Awq {
                qweight,
                qzeros,
                scales,
                inf: k,
                outf,
                group: g,
            } = l
            else {
                bail!("the fused GEMV takes AWQ layers only");
            };
            *slot = AwqMatrix {
                qweight: qweight.ptr,
                qzeros: qzeros.ptr,
                scales: scales.ptr,
                y,
                n: *outf as i32,
            };
            (inf, group) = (*k, *g);
        }
        // As many blocks as fit at once (the kernel's launch bounds) and no more: a second, partial wave
        // would nearly double the time. Rows per block: whole groups, at least 128 (fewer would only add
        // atomics), at most GEMV_MAX_ROWS (the block's shared input).
        let strips: usize = jobs.iter().map(|(l, _)| l.dims().1.div_ceil(256)).sum();
        let (kernel, per_sm) = match input {
            GemvInput::AttentionParts { .. } => {
                (&self.kernels.awq_gemv_attn, GEMV_ATTN_BLOCKS_PER_SM)
            }
            _ => (&self.kernels.awq_gemv, GEMV_BLOCKS_PER_SM),
        };
        let splits = (per_sm * self.multiprocessors / strips).max(1);
        let rows_per_block = inf
            .div_ceil(splits)
            .next_multiple_of(group.max(128).min(inf))
            .min(GEMV_MAX_ROWS)
            .min(inf);
        let cfg = LaunchConfig {
            grid_dim: (strips as u32, inf.div_ceil(rows_per_block) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let [m0, m1, m2] = matrices;
        let s = &self.scratch;
        let (x, gate, up, norm_x, norm_w) = match input {
            GemvInput::Row(x) => (x, 0, 0, 0, 0),
            GemvInput::AttentionParts { .. } => (0, 0, 0, 0, 0),
            GemvInput::SiluOf { gate, up } => (0, gate, up, 0, 0),
            GemvInput::Normed { x, weight } => (0, 0, 0, x, weight),
        };
        let (attn_partial, attn_chunks) = match input {
            GemvInput::AttentionParts { chunks } => (s.partial.ptr, chunks),
            _ => (0, 0),
        };
        self.launch(
            kernel,
            cfg,
            &[
                Arg::Matrix(m0),
                Arg::Matrix(m1),
                Arg::Matrix(m2),
                Arg::Ptr(x),
                Arg::Ptr(gate),
                Arg::Ptr(up),
                Arg::Ptr(norm_x),
                Arg::Ptr(norm_w),
                Arg::Ptr(attn_partial),
                Arg::Ptr(s.step.ptr),
                int(attn_chunks),
                int(self.config.head_dim()),
                Arg::Float(self.config.rms_norm_eps as f32),
                Arg::Ptr(zero.0),
                int(zero.1),
                int(inf),
                int(group.trailing_zeros() as usize - 5),
                int(rows_per_block),
            ],
        )
    }

    /// y[m][out] (+)= x[m][in] · W; `accumulate` adds to y (the residual stream).
    fn linear_into(&self, l: &Linear, x: u64, m: usize, y: u64, accumulate: bool) -> Result<()> {
        let (inf, outf) = l.dims();
        match l {
            Linear::Awq { .. } if m == 1 => self.awq_gemv(&[(l, y)], GemvInput::Row(x), (0, 0)),
            Linear::Awq {
                qweight,
                qzeros,
                scales,
                group,
                ..
            } => {
                let w = self.scratch.dequant.ptr;
                let words = inf * outf / 8;
                self.launch(
                    &self.kernels.awq_dequant,
                    grid((words.div_ceil(256), 1), 256),
                    &[
                        Arg::Ptr(qweight.ptr),
                        Arg::Ptr(qzeros.ptr),
                        Arg::Ptr(scales.ptr),
                        Arg::Ptr(w),
                        int(inf),
                        int(outf),
                        int(*group),
                    ],
                )?;
                // Row-major Y[m][out] = X[m][in]·W[in][out] is column-major Yᵀ = Wᵀ·Xᵀ.
                let beta = if accumulate { 1.0 } else { 0.0 };
                self.gemm(
                    false,
                    (outf, m, inf),
                    (w, outf, 0),
                    (x, inf, 0),
                    (y, outf, 0, true),
                    1.0,
                    beta,
                    1,
                )
            }
            Linear::Int8 { weight, scales, .. } => {
                ensure!(!accumulate, "the int8 lm_head does not add into its output");
                self.launch(
                    &self.kernels.i8_gemv,
                    grid((outf.div_ceil(I8_ROWS_PER_BLOCK), m), 256),
                    &[
                        Arg::Ptr(weight.ptr),
                        Arg::Ptr(scales.ptr),
                        Arg::Ptr(x),
                        Arg::Ptr(y),
                        int(inf),
                        int(outf),
                    ],
                )
            }
            Linear::Dense { weight, .. } if m == 1 => {
                let acc = accumulate as i32;
                self.launch(
                    &self.kernels.dense_gemv,
                    grid((outf.div_ceil(8), 1), 256),
                    &[
                        Arg::Ptr(weight.ptr),
                        Arg::Ptr(x),
                        Arg::Ptr(y),
                        int(inf),
                        int(outf),
                        Arg::Int(acc),
                    ],
                )
            }
            Linear::Dense { weight, .. } => {
                let beta = if accumulate { 1.0 } else { 0.0 };
                self.gemm(
                    true,
                    (outf, m, inf),
                    (weight.ptr, inf, 0),
                    (x, inf, 0),
                    (y, outf, 0, true),
                    1.0,
                    beta,
                    1,
                )
            }
        }
    }

    /// RMSNorm of `rows` rows into f16 `out`, zeroing `zero` (address, f32 count) on the way.
    fn rms_norm(&self, x: u64, w: u64, out: u64, rows: usize, zero: (u64, usize)) -> Result<()> {
        let h = self.config.hidden_size;
        let eps = self.config.rms_norm_eps as f32;
        let blocks = rows.max(zero.1.div_ceil(ZERO_PER_BLOCK));
        self.launch(
            &self.kernels.rms_norm,
            grid((blocks, 1), 1024),
            &[
                Arg::Ptr(x),
                Arg::Ptr(w),
                Arg::Ptr(out),
                int(h),
                int(rows),
                Arg::Float(eps),
                Arg::Ptr(zero.0),
                int(zero.1),
            ],
        )
    }

    /// Sends a chunk's ids and positions to the device (never part of a graph: the values change).
    fn upload_chunk(&self, ids: &[u32], start: usize) -> Result<()> {
        let s = &self.scratch;
        let ids_i32: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
        let step = [start as i32, (start + ids.len()) as i32];
        // SAFETY: the ids buffer holds MAX_CHUNK elements and chunks are at most that long; step holds 2.
        // Copies from pageable memory return once the data is staged, so the vectors may be dropped.
        unsafe {
            driver::memcpy_htod_async(s.ids.ptr, &ids_i32, self.stream.cu_stream())?;
            driver::memcpy_htod_async(s.step.ptr, &step, self.stream.cu_stream())?;
        }
        Ok(())
    }

    /// Every layer over the uploaded chunk of m ids at positions start..start+m; leaves the final
    /// normed rows in scratch. For m = 1 it launches only graph-safe work (no cuBLAS, no host copies).
    /// `attn_chunks` is the decode attention's grid (m = 1), at least (start + 1) / 64 rounded up.
    fn run_layers(&self, m: usize, start: usize, attn_chunks: usize) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (h, hd, inter) = (c.hidden_size, c.head_dim(), c.intermediate_size);
        let ([q, k, v], qkv_all) = self.qkv_rows(m);
        let ([gate, up], gate_up_all) = self.gate_up_rows(m);
        // One row: the GEMVs add into their outputs; layer 0's q/k/v are zeroed by the embedding.
        let qkv_len = if m == 1 { qkv_all } else { 0 };
        match (&self.embed, &self.lm_head) {
            (Some(Buf { ptr: table, .. }), _)
            | (
                None,
                Linear::Dense {
                    weight: Buf { ptr: table, .. },
                    ..
                },
            ) => self.launch_with(
                &self.kernels.embed_f16,
                grid((m, h.div_ceil(256)), 256),
                &[
                    Arg::Ptr(*table),
                    Arg::Ptr(s.ids.ptr),
                    Arg::Ptr(s.hidden.ptr),
                    int(h),
                    Arg::Ptr(q),
                    int(qkv_len),
                ],
                false,
            )?,
            (
                None,
                Linear::Awq {
                    qweight,
                    qzeros,
                    scales,
                    group,
                    ..
                },
            ) => self.launch_with(
                &self.kernels.embed_awq,
                grid((m, h.div_ceil(256)), 256),
                &[
                    Arg::Ptr(qweight.ptr),
                    Arg::Ptr(qzeros.ptr),
                    Arg::Ptr(scales.ptr),
                    Arg::Ptr(s.ids.ptr),
                    Arg::Ptr(s.hidden.ptr),
                    int(h),
                    int(c.vocab_size),
                    int(*group),
                    Arg::Ptr(q),
                    int(qkv_len),
                ],
                false,
            )?,
            (None, Linear::Int8 { .. }) => bail!("an int8 lm_head is never the embedding table"),
        }
        let scale = 1.0 / (hd as f32).sqrt();
        let gate_up_len = if m == 1 { gate_up_all } else { 0 };
        for layer in &self.layers {
            if m == 1 && self.fused_decode {
                self.decode_layer_awq(layer, scale, attn_chunks)?;
                continue;
            }
            // One row: the GEMVs add into their outputs, which the norm zeroes first.
            self.rms_norm(
                s.hidden.ptr,
                layer.input_norm.ptr,
                s.normed.ptr,
                m,
                (q, qkv_len),
            )?;
            self.linears(
                &[(&layer.q_proj, q), (&layer.k_proj, k), (&layer.v_proj, v)],
                s.normed.ptr,
                m,
            )?;
            if m == 1 {
                self.attention_decode(layer, scale, attn_chunks, true)?;
            } else {
                self.attention_prefill(layer, m, start, scale)?;
            }
            self.linear_into(&layer.o_proj, s.attn_rows.ptr, m, s.hidden.ptr, true)?;
            self.rms_norm(
                s.hidden.ptr,
                layer.post_attention_norm.ptr,
                s.normed.ptr,
                m,
                (gate, gate_up_len),
            )?;
            self.linears(
                &[(&layer.gate_proj, gate), (&layer.up_proj, up)],
                s.normed.ptr,
                m,
            )?;
            if m == 1 && matches!(layer.down_proj, Linear::Awq { .. }) {
                let input = GemvInput::SiluOf { gate, up };
                self.awq_gemv(&[(&layer.down_proj, s.hidden.ptr)], input, (0, 0))?;
            } else {
                let n = m * inter;
                self.launch(
                    &self.kernels.silu_mul,
                    grid((n.div_ceil(256), 1), 256),
                    &[Arg::Ptr(gate), Arg::Ptr(up), Arg::Ptr(s.act.ptr), int(n)],
                )?;
                self.linear_into(&layer.down_proj, s.act.ptr, m, s.hidden.ptr, true)?;
            }
        }
        // A one-row AWQ lm_head adds into the logits: zero them here rather than in a memset, which
        // would break the chain of overlapping kernels in the decode graph.
        let logits = match self.lm_head {
            Linear::Awq { .. } => (s.logits.ptr, self.config.vocab_size),
            Linear::Dense { .. } | Linear::Int8 { .. } => (0, 0),
        };
        self.rms_norm(s.hidden.ptr, self.norm.ptr, s.final_normed.ptr, m, logits)
    }

    /// One layer of a decode step whose matrices are all AWQ, in five kernels: the RMSNorms run inside
    /// the GEMVs that read them, q/k-norm, RoPE and the cache write inside the attention, and each GEMV
    /// zeroes the outputs of a later one (whose readers have finished by then) for its atomics.
    fn decode_layer_awq(&self, layer: &Layer, scale: f32, attn_chunks: usize) -> Result<()> {
        let ([q, k, v], qkv_len) = self.qkv_rows(1);
        let ([gate, up], gate_up_len) = self.gate_up_rows(1);
        let hidden = self.scratch.hidden.ptr;
        self.awq_gemv(
            &[(&layer.q_proj, q), (&layer.k_proj, k), (&layer.v_proj, v)],
            GemvInput::Normed {
                x: hidden,
                weight: layer.input_norm.ptr,
            },
            (gate, gate_up_len),
        )?;
        self.attention_decode(layer, scale, attn_chunks, false)?;
        self.awq_gemv(
            &[(&layer.o_proj, hidden)],
            GemvInput::AttentionParts {
                chunks: attn_chunks,
            },
            (q, qkv_len),
        )?;
        self.awq_gemv(
            &[(&layer.gate_proj, gate), (&layer.up_proj, up)],
            GemvInput::Normed {
                x: hidden,
                weight: layer.post_attention_norm.ptr,
            },
            (0, 0),
        )?;
        self.awq_gemv(
            &[(&layer.down_proj, hidden)],
            GemvInput::SiluOf { gate, up },
            (0, 0),
        )
    }

    /// Attention of the one new token (its q, k, v straight from the projections): joined into
    /// `attn_rows`, or with `join` false left in per-chunk parts for `GemvInput::AttentionParts`.
    fn attention_decode(&self, layer: &Layer, scale: f32, chunks: usize, join: bool) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let mut args = Vec::from(self.norm_rope_args(layer, 1));
        args.extend([
            Arg::Ptr(layer.k_cache.ptr),
            Arg::Ptr(layer.v_cache.ptr),
            Arg::Ptr(s.partial.ptr),
            Arg::Ptr(s.arrivals.ptr),
            Arg::Ptr(if join { s.attn_rows.ptr } else { 0 }),
            Arg::Ptr(s.step.ptr),
            int(nh),
            int(nkv),
            int(hd),
            int(self.capacity),
            Arg::Float(scale),
            Arg::Float(c.rms_norm_eps as f32),
        ]);
        self.launch(&self.kernels.attn_decode, grid((nkv, chunks), 256), &args)
    }

    /// Causal attention of m queries over positions 0..start+m with cuBLAS: per KV head, the scores of
    /// its group of query heads at once (Q rows [group][m] are contiguous in [heads][m][hd]).
    fn attention_prefill(&self, layer: &Layer, m: usize, start: usize, scale: f32) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let (len, rows) = (start + m, (nh / nkv) * m);
        let kv_stride = self.capacity * hd;
        self.qk_norm_rope(layer, m)?;
        // Scoresᵀ (len × rows) = K (len × hd) · Qᵀ, per KV head.
        self.gemm(
            true,
            (len, rows, hd),
            (layer.k_cache.ptr, hd, kv_stride),
            (s.q_heads.ptr, hd, rows * hd),
            (s.scores.ptr, len, rows * len, true),
            scale,
            0.0,
            nkv,
        )?;
        self.launch(
            &self.kernels.softmax_causal,
            grid((nh * m, 1), 256),
            &[
                Arg::Ptr(s.scores.ptr),
                Arg::Ptr(s.probs.ptr),
                int(m),
                int(len),
                int(start),
            ],
        )?;
        // Outᵀ (hd × rows) = Vᵀ (hd × len) · Pᵀ (len × rows), per KV head.
        self.gemm(
            false,
            (hd, rows, len),
            (layer.v_cache.ptr, hd, kv_stride),
            (s.probs.ptr, len, rows * len),
            (s.attn_heads.ptr, hd, rows * hd, false),
            1.0,
            0.0,
            nkv,
        )?;
        self.launch(
            &self.kernels.heads_to_rows,
            grid((m, nh), 64),
            &[
                Arg::Ptr(s.attn_heads.ptr),
                Arg::Ptr(s.attn_rows.ptr),
                int(m),
                int(nh),
                int(hd),
            ],
        )
    }

    /// q/k RMSNorm and RoPE of m rows: q into `q_heads`, k and v into the cache.
    fn qk_norm_rope(&self, layer: &Layer, m: usize) -> Result<()> {
        let c = &self.config;
        let s = &self.scratch;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let mut args = Vec::from(self.norm_rope_args(layer, m));
        args.extend([
            Arg::Ptr(s.q_heads.ptr),
            Arg::Ptr(layer.k_cache.ptr),
            Arg::Ptr(layer.v_cache.ptr),
            int(m),
            int(nh),
            int(nkv),
            int(hd),
            Arg::Ptr(s.step.ptr),
            int(self.capacity),
            Arg::Float(c.rms_norm_eps as f32),
        ]);
        self.launch(&self.kernels.qk_norm_rope, grid((m, nh + nkv), 32), &args)
    }

    /// The leading arguments of the kernels that apply q/k-norm and RoPE (attn_decode, qk_norm_rope):
    /// the m-row chunk's q, k and v, the layer's norm weights and the RoPE tables.
    fn norm_rope_args(&self, layer: &Layer, m: usize) -> [Arg; 7] {
        let [q, k, v] = self.qkv_rows(m).0;
        [
            Arg::Ptr(q),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::Ptr(layer.q_norm.ptr),
            Arg::Ptr(layer.k_norm.ptr),
            Arg::Ptr(self.rope_cos.ptr),
            Arg::Ptr(self.rope_sin.ptr),
        ]
    }

    /// Where q, k and v of an m-row chunk lie in `scratch.qkv` ([m][heads·hd], then k, then v) and the
    /// f32 count of all three: the one layout every kernel that writes, reads or zeroes them uses.
    fn qkv_rows(&self, m: usize) -> ([u64; 3], usize) {
        let c = &self.config;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let qkv = &self.scratch.qkv;
        (
            [qkv.ptr, qkv.at(m * nh * hd), qkv.at(m * (nh + nkv) * hd)],
            m * (nh + 2 * nkv) * hd,
        )
    }

    /// Where gate and up of an m-row chunk lie in `scratch.gate_up`, and the f32 count of both.
    fn gate_up_rows(&self, m: usize) -> ([u64; 2], usize) {
        let inter = self.config.intermediate_size;
        let gate_up = &self.scratch.gate_up;
        ([gate_up.ptr, gate_up.at(m * inter)], 2 * m * inter)
    }

    /// The largest chunk whose score matrix fits the budget when the context reaches `start + chunk`.
    fn chunk_len(&self, start: usize, remaining: usize) -> usize {
        let nh = self.config.num_attention_heads;
        let mut m = remaining.min(MAX_CHUNK).min(self.capacity);
        while m > 1 && nh * m * (start + m) > self.scratch.scores.slice.len() {
            m /= 2;
        }
        m
    }

    /// Launches the lm_head over `rows` final normed rows from row `first` into `logits`.
    fn lm_head(&self, first: usize, rows: usize, logits: u64) -> Result<()> {
        let h = self.config.hidden_size;
        self.linear(
            &self.lm_head,
            self.scratch.final_normed.at(first * h),
            rows,
            logits,
        )
    }

    /// Appends `rows` rows of logits from the device to `out`, waiting for the GPU.
    fn download(&self, logits: u64, rows: usize, out: &mut Vec<f32>) -> Result<()> {
        let at = out.len();
        out.resize(at + rows * self.config.vocab_size, 0.0);
        // SAFETY: `logits` holds at least rows × vocab f32.
        unsafe { self.copy_to_host(logits, &mut out[at..]) }
    }

    /// Copies `out.len()` values from device address `src` into `out` once the work queued before
    /// (which computes them) is done, waiting for the GPU.
    ///
    /// # Safety
    /// `src` must hold at least `out.len()` values of type `T`.
    unsafe fn copy_to_host<T>(&self, src: u64, out: &mut [T]) -> Result<()> {
        // SAFETY: the caller's contract; the copy is ordered on the stream after the work that writes `src`.
        unsafe { driver::memcpy_dtoh_async(out, src, self.stream.cu_stream()) }?;
        self.stream
            .synchronize()
            .context("the GPU failed while computing logits")?;
        Ok(())
    }

    /// Records one decode step (embedding to logits) without running it.
    fn capture_decode(&self, attn_chunks: usize) -> Result<CudaGraph> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let recorded = self
            .run_layers(1, 0, attn_chunks)
            .and_then(|()| self.lm_head(0, 1, self.scratch.logits.ptr));
        // End the capture even when recording failed, so the stream is usable again.
        let graph = self.stream.end_capture(CUgraphInstantiate_flags(0));
        recorded.context("recording the decode step")?;
        graph
            .context("instantiating the decode graph")?
            .context("CUDA captured no work for the decode step")
    }

    /// Whether `ids` can run after the cached positions: some, within the vocabulary, room left.
    fn check_new_ids(&self, ids: &[u32]) -> Result<()> {
        let start = self.tokens.len();
        if ids.is_empty() {
            bail!("forward needs at least one token");
        }
        if start + ids.len() > self.capacity {
            bail!(
                "the context is full: {start} cached + {} new tokens exceed the {} positions allocated \
                 (raise context_length)",
                ids.len(),
                self.capacity
            );
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            bail!(
                "token id {bad} is outside the vocabulary (size {})",
                self.config.vocab_size
            );
        }
        Ok(())
    }

    /// Runs the decode step for `id` at position `start` (its graph, captured on first use); the
    /// logits stay in scratch.logits.
    fn replay_decode(&mut self, id: u32, start: usize) -> Result<()> {
        self.upload_chunk(&[id], start)?;
        let chunks = (start + 1)
            .div_ceil(ATTN_CHUNK)
            .next_power_of_two()
            .min(self.capacity.div_ceil(ATTN_CHUNK));
        if !self.decode_graphs.contains_key(&chunks) {
            let graph = DecodeGraph(self.capture_decode(chunks)?);
            self.decode_graphs.insert(chunks, graph);
        }
        if let Some(DecodeGraph(graph)) = self.decode_graphs.get(&chunks) {
            graph.launch().context("replaying the decode step")?;
        }
        Ok(())
    }

    /// The index of the largest logit in scratch.logits (argmax_logits), waiting for the GPU.
    fn argmax_logits(&self) -> Result<u32> {
        let s = &self.scratch;
        // SAFETY: best_logit holds one u64; the memset is ordered on the stream before the kernel.
        unsafe { driver::memset_d8_async(s.best_logit.ptr, 0, 8, self.stream.cu_stream()) }?;
        self.launch_with(
            &self.kernels.argmax_logits,
            grid((self.multiprocessors, 1), 256),
            &[
                Arg::Ptr(s.logits.ptr),
                int(self.config.vocab_size),
                Arg::Ptr(s.best_logit.ptr),
            ],
            false,
        )?;
        let mut key = [0u64];
        // SAFETY: best_logit holds one u64.
        unsafe { self.copy_to_host(s.best_logit.ptr, &mut key) }?;
        // No key: every logit was NaN; the host's argmax answers 0 then too.
        Ok(if key[0] == 0 {
            0
        } else {
            u32::MAX - key[0] as u32
        })
    }
}

impl Decoder for CudaQwen3 {
    fn config(&self) -> &Qwen3Config {
        &self.config
    }

    fn cached_tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate_cache(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn gpu_report(&mut self) -> Result<Option<GpuReport>> {
        let (free, total) = self.stream.context().mem_get_info()?;
        Ok(Some(GpuReport {
            device: self.device_name.clone(),
            memory_used_bytes: total - free,
            model_bytes: self.device_bytes(),
            decode_bytes_per_token: self.decode_bytes_per_token(),
            checkpoint_bytes_per_token: self.checkpoint_bytes_per_token(),
            copy_bytes_per_s: self.measure_copy_bandwidth()?,
        }))
    }

    fn forward_argmax(&mut self, id: u32) -> Result<Option<u32>> {
        self.check_new_ids(&[id])?;
        self.replay_decode(id, self.tokens.len())?;
        let best = self.argmax_logits()?;
        self.tokens.push(id);
        Ok(Some(best))
    }

    fn forward(&mut self, ids: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        self.check_new_ids(ids)?;
        let c = &self.config;
        let start = self.tokens.len();
        if ids.len() == 1 && !all_logits {
            self.replay_decode(ids[0], start)?;
            let mut logits = Vec::new();
            self.download(self.scratch.logits.ptr, 1, &mut logits)?;
            self.tokens.push(ids[0]);
            return Ok(logits);
        }
        let vocab = c.vocab_size;
        let mut logits = Vec::new();
        let mut done = 0;
        while done < ids.len() {
            let m = self.chunk_len(start + done, ids.len() - done);
            let chunk = &ids[done..done + m];
            self.upload_chunk(chunk, start + done)?;
            self.run_layers(m, start + done, (start + done + 1).div_ceil(ATTN_CHUNK))?;
            self.tokens.extend_from_slice(chunk);
            done += m;
            if all_logits {
                let rows = Buf::<f32>::zeros(&self.stream, m * vocab)?;
                self.lm_head(0, m, rows.ptr)?;
                self.download(rows.ptr, m, &mut logits)?;
            } else if done == ids.len() {
                self.lm_head(m - 1, 1, self.scratch.logits.ptr)?;
                self.download(self.scratch.logits.ptr, 1, &mut logits)?;
            }
        }
        Ok(logits)
    }
}
