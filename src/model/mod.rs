//! The Qwen3 model: checkpoint loading (mapped safetensors), the CPU decoder with its AWQ int4 kernels
//! and KV cache, and (feature `cuda`) the GPU decoder; `Decoder` is what the engine drives on either.

pub mod awq;
pub mod awq_int8;
pub mod bandwidth;
pub mod checkpoint;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decoder;
pub mod dense;
pub mod hub;
pub mod int8_matrix;
pub mod kv_cache;
pub mod load;
pub mod npy;
pub mod quantize;
pub mod qwen3;
pub mod rope;
pub mod synth;
pub mod weights;

pub use config::{GenerationConfig, Qwen3Config};
pub use decoder::{CpuDecoder, Decoder, GpuReport};
pub use kv_cache::KvCache;
pub use load::{Device, KvCacheFormat, LoadOptions, load_cpu_model, load_decoder};
pub use qwen3::{Precision, Qwen3, Segment, load_dir};
