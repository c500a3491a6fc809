//! The KV cache on the device: per layer, keys and values as [kv_heads][capacity][head_dim] rows in
//! the chosen format (kv_cache.cuh), and for fp8 one f32 scale per row.

use super::device::{Arg, Buf};
use crate::model::KvCacheFormat;
use anyhow::Result;
use cudarc::driver::CudaStream;
use std::sync::Arc;

/// One layer's keys and values.
pub(super) struct LayerKvCache {
    keys: Buf<u8>,
    values: Buf<u8>,
    /// fp8 only: each row's scale (max |value| / 448), keys' then values' tables.
    scales: Option<[Buf<f32>; 2]>,
}

impl LayerKvCache {
    /// A zeroed cache of `rows` (kv_heads × capacity) rows of `head_dim` values.
    pub(super) fn zeros(
        stream: &Arc<CudaStream>,
        format: KvCacheFormat,
        rows: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let bytes = rows * head_dim * format.bytes_per_value();
        let scales = match format {
            KvCacheFormat::F16 => None,
            KvCacheFormat::Fp8 => Some([Buf::zeros(stream, rows)?, Buf::zeros(stream, rows)?]),
        };
        Ok(LayerKvCache {
            keys: Buf::zeros(stream, bytes)?,
            values: Buf::zeros(stream, bytes)?,
            scales,
        })
    }

    /// The kernels' cache arguments: keys, values, keys' scales, values' scales (null for f16).
    pub(super) fn args(&self) -> [Arg; 4] {
        let [k_scales, v_scales] = self.scales.as_ref().map_or([0, 0], |[k, v]| [k.ptr, v.ptr]);
        [
            Arg::Ptr(self.keys.ptr),
            Arg::Ptr(self.values.ptr),
            Arg::Ptr(k_scales),
            Arg::Ptr(v_scales),
        ]
    }

    pub(super) fn bytes(&self) -> usize {
        let scales = self
            .scales
            .as_ref()
            .map_or(0, |[k, v]| k.bytes() + v.bytes());
        self.keys.bytes() + self.values.bytes() + scales
    }
}
