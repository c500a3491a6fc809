//! The Qwen3 model on the CPU: checkpoint loading (mapped safetensors), AWQ int4 kernels, the decoder,
//! and its KV cache.

pub mod awq;
pub mod awq_int8;
pub mod checkpoint;
pub mod config;
pub mod dense;
pub mod hub;
pub mod int8_matrix;
pub mod kv_cache;
pub mod npy;
pub mod quantize;
pub mod qwen3;
pub mod rope;
pub mod synth;
pub mod weights;

pub use config::{GenerationConfig, Qwen3Config};
pub use kv_cache::KvCache;
pub use qwen3::{Precision, Qwen3, load_dir};
