//! What `bench --device cuda` reports about the model on the GPU: its bytes, the bytes each decoded
//! token reads, and a measured copy bandwidth.

use super::CudaQwen3;
use super::device::Buf;
use super::formats::Linear;
use anyhow::Result;
use cudarc::driver::result as driver;

impl CudaQwen3 {
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
            s.q_heads.bytes() + s.attn_rows.bytes(),
            s.gate_up.bytes() + s.act.bytes(),
            s.partial.bytes() + s.dequant.bytes(),
            s.final_normed.bytes() + s.logits.bytes(),
        ]
        .iter()
        .sum::<usize>();
        let cache: usize = self.layers.iter().map(|l| l.kv.bytes()).sum();
        let embed = self.embed.as_ref().map_or(0, Buf::bytes);
        self.decode_bytes_per_token()
            + cache
            + scratch
            + self.sampling.bytes()
            + embed
            + self.rope_cos.bytes() * 2
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
}
