//! qwen3-agent: a Rust agent runtime for Qwen3 models. See ARCHITECTURE.md for the map.

pub mod agent;
pub mod backend;
pub mod chat;
pub mod config;
pub mod engine;
pub mod model;
pub mod rng;
pub mod serve;
pub mod tools;
