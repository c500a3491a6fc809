//! Weight formats on the device: AWQ int4 (repacked at load into the decode layout of kernels.cu),
//! dense f16 and int8 with per-row, per-group scales, and what each costs in bytes.

use super::device::{Arg, Buf, Kernels, grid, int, launch_on};
use super::matmul::GEMV_MAX_ROWS;
use crate::model::config::AwqConfig;
use crate::model::weights::{TensorRef, Weights};
use anyhow::{Result, ensure};
use cudarc::driver::CudaStream;
use half::f16;
use safetensors::Dtype;
use std::sync::Arc;

/// A linear layer on the device: AWQ (qweight in the decode layout of kernels.cu), dense f16
/// [out][in], or int8 [out][in] with a scale per row and group of 128 (the untied lm_head, as the CPU
/// engine's int8_matrix.rs: half the bytes of f16 every token).
pub(super) enum Linear {
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
    pub(super) fn load(
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
    pub(super) fn load_awq(
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
    pub(super) fn int8_from(
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
    pub(super) fn checkpoint_bytes(&self) -> usize {
        match self {
            Linear::Int8 { inf, outf, .. } => inf * outf * 2,
            _ => self.bytes(),
        }
    }

    pub(super) fn dims(&self) -> (usize, usize) {
        match self {
            Linear::Awq { inf, outf, .. }
            | Linear::Dense { inf, outf, .. }
            | Linear::Int8 { inf, outf, .. } => (*inf, *outf),
        }
    }

    pub(super) fn bytes(&self) -> usize {
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
    pub(super) fn dequant_len(&self) -> usize {
        match self {
            Linear::Awq { inf, outf, .. } => inf * outf,
            Linear::Dense { .. } | Linear::Int8 { .. } => 0,
        }
    }
}

/// Converts any float tensor to f16 on the host (checkpoints store f16 or bf16).
pub(super) fn to_f16(t: &TensorRef<'_>) -> Result<Vec<f16>> {
    Ok(match t.dtype {
        Dtype::F16 => t.mapped_f16()?.to_vec(),
        _ => t.to_f32()?.into_iter().map(f16::from_f32).collect(),
    })
}
