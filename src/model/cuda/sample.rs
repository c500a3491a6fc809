//! Sampled decoding's candidates on the device (`Decoder::forward_top_k`): the penalties and the top-k
//! run where the logits are (sample_top_k_blocks, then sample_top_k in kernels.cu), and the host gets k
//! keys per token, not the vocabulary's 608 KB of logits. The draw over them stays on the host
//! (`Sampler::pick`): one definition of temperature, top-p, min-p and the seeded stream for both paths,
//! so a GPU run samples the ids the host sampler would from the same logits.
//!
//! The tokens the penalties count live on the device as one mark byte per vocabulary entry: written
//! from the prompt and output at a generation's first request, then each step's kernel marks the token
//! it runs. Not served, so sampled on the host: k above MAX_K (top_k 0 or over 64), vocabularies over
//! SLICE · MAX_BLOCKS entries, and QWEN3_AGENT_CUDA_DEVICE_SAMPLING=0.

use super::CudaQwen3;
use super::device::{Arg, Buf, grid, int};
use crate::model::decoder::TopKRequest;
use anyhow::{Context, Result};
use cudarc::driver::{CudaStream, result as driver};
use std::sync::Arc;

/// The largest k served (SAMPLE_MAX_K in kernels.cu).
const MAX_K: usize = 64;
/// Logits per block of sample_top_k_blocks (SAMPLE_SLICE), and the most blocks sample_top_k joins
/// (SAMPLE_MAX_BLOCKS).
const SLICE: usize = 1024;
const MAX_BLOCKS: usize = 256;
/// A token's mark: in the prompt or the output (repetition penalty), in the output (presence penalty);
/// MARK_SEEN and MARK_OUTPUT in kernels.cu.
const MARK_SEEN: u8 = 1;
const MARK_OUTPUT: u8 = 2;
/// Set to 0 to sample every token on the host from downloaded logits (A/B measurements, and
/// scripts/cuda/check.py's comparison of the two paths).
const DEVICE_SAMPLING_ENV: &str = "QWEN3_AGENT_CUDA_DEVICE_SAMPLING";

/// The device buffers of candidate selection.
pub(super) struct Sampling {
    marks: Buf<u8>,
    /// Each block's k best keys, [blocks][k].
    block_top: Buf<u64>,
    /// The k best keys.
    top: Buf<u64>,
    enabled: bool,
}

impl Sampling {
    pub(super) fn new(stream: &Arc<CudaStream>, vocab: usize) -> Result<Self> {
        let blocks = vocab.div_ceil(SLICE);
        Ok(Sampling {
            marks: Buf::zeros(stream, vocab)?,
            block_top: Buf::zeros(stream, blocks * MAX_K)?,
            top: Buf::zeros(stream, MAX_K)?,
            enabled: blocks <= MAX_BLOCKS
                && std::env::var(DEVICE_SAMPLING_ENV).map_or(true, |v| v != "0"),
        })
    }

    pub(super) fn bytes(&self) -> usize {
        self.marks.bytes() + self.block_top.bytes() + self.top.bytes()
    }
}

impl CudaQwen3 {
    /// `Decoder::forward_top_k`: the decode step for `id`, then its candidates selected on the device.
    pub(super) fn top_k_candidates(
        &mut self,
        id: u32,
        request: &TopKRequest,
    ) -> Result<Option<Vec<(u32, f32)>>> {
        let k = request.k;
        if !self.sampling.enabled || k == 0 || k > MAX_K {
            return Ok(None);
        }
        self.check_new_ids(&[id])?;
        let penalized = request.repetition_penalty != 1.0 || request.presence_penalty != 0.0;
        if penalized && request.fresh {
            self.write_marks(request.prompt, request.generated)?;
        }
        self.replay_decode(id, self.tokens.len())?;
        let vocab = self.config.vocab_size;
        let blocks = vocab.div_ceil(SLICE);
        let (s, sampling) = (&self.scratch, &self.sampling);
        let marks = Arg::Ptr(if penalized { sampling.marks.ptr } else { 0 });
        self.launch_with(
            &self.kernels.sample_top_k_blocks,
            grid((blocks, 1), 512),
            &[
                Arg::Ptr(s.logits.ptr),
                int(vocab),
                marks,
                Arg::Ptr(s.ids.ptr),
                Arg::Float(request.repetition_penalty),
                Arg::Float(request.presence_penalty),
                int(k),
                Arg::Ptr(sampling.block_top.ptr),
            ],
            false,
        )?;
        let marks = Arg::Ptr(if penalized { sampling.marks.ptr } else { 0 });
        self.launch_with(
            &self.kernels.sample_top_k,
            grid((1, 1), 1024),
            &[
                Arg::Ptr(sampling.block_top.ptr),
                int(blocks),
                int(k),
                marks,
                Arg::Ptr(s.ids.ptr),
                Arg::Ptr(sampling.top.ptr),
            ],
            false,
        )?;
        let mut keys = vec![0u64; k];
        // SAFETY: top holds MAX_K ≥ k keys.
        unsafe { self.copy_to_host(sampling.top.ptr, &mut keys) }?;
        self.tokens.push(id);
        // Keys of 0 pad the list where fewer than k logits are not NaN.
        Ok(Some(
            keys.into_iter()
                .take_while(|&key| key != 0)
                .map(candidate)
                .collect(),
        ))
    }

    /// Marks the prompt's and the output's tokens for the penalties, replacing earlier marks.
    fn write_marks(&self, prompt: &[u32], generated: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        let mut marks = vec![0u8; vocab];
        let marked = [(prompt, MARK_SEEN), (generated, MARK_SEEN | MARK_OUTPUT)];
        for (ids, mark) in marked {
            for &id in ids {
                *marks.get_mut(id as usize).with_context(|| {
                    format!("token id {id} is outside the vocabulary ({vocab})")
                })? |= mark;
            }
        }
        // SAFETY: marks holds one byte per vocabulary entry; a copy from pageable memory returns once
        // the data is staged, and the stream orders it before the kernels that read it.
        unsafe {
            driver::memcpy_htod_async(self.sampling.marks.ptr, &marks, self.stream.cu_stream())
        }?;
        Ok(())
    }
}

/// The (id, logit) of a logit_key (kernels.cu): the inverse of its order-preserving bits and ~index.
pub(super) fn candidate(key: u64) -> (u32, f32) {
    let ordered = (key >> 32) as u32;
    let bits = if ordered & 0x8000_0000 != 0 {
        ordered & 0x7FFF_FFFF
    } else {
        !ordered
    };
    (u32::MAX - key as u32, f32::from_bits(bits))
}

#[cfg(test)]
mod tests {
    use super::candidate;
    use crate::engine::sampler::candidate_order;

    /// logit_key of kernels.cu.
    fn key(v: f32, i: u32) -> u64 {
        let bits = v.to_bits();
        let ordered = if bits & 0x8000_0000 != 0 {
            !bits
        } else {
            bits | 0x8000_0000
        };
        (ordered as u64) << 32 | (u32::MAX - i) as u64
    }

    #[test]
    fn keys_decode_to_their_candidates_and_sort_in_candidate_order() {
        let values = [
            1.5,
            -2.25,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-30,
            -1e-30,
            1.5,
        ];
        let mut pairs: Vec<(u32, f32)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32 * 7, v))
            .collect();
        for &(i, v) in &pairs {
            let (id, back) = candidate(key(v, i));
            assert_eq!((id, back.to_bits()), (i, v.to_bits()));
        }
        let mut by_key = pairs.clone();
        by_key.sort_by_key(|&(i, v)| std::cmp::Reverse(key(v, i)));
        pairs.sort_by(candidate_order);
        assert_eq!(
            by_key.iter().map(|c| c.0).collect::<Vec<_>>(),
            pairs.iter().map(|c| c.0).collect::<Vec<_>>()
        );
    }
}
