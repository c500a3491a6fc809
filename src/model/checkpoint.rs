//! Writing checkpoints in the HF layout (config.json + safetensors, sharded with an index when large):
//! used by `synth`, `quantize` and the demo model, so everything we write loads like a published model.

use anyhow::{Context, Result};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::cell::Cell;
use std::path::Path;

/// A tensor whose bytes are produced only when the writer reaches it, so an 8B checkpoint is written with
/// one tensor in memory at a time.
pub struct LazyTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub make: Box<dyn Fn() -> Vec<u8> + Send + Sync>,
}

impl LazyTensor {
    pub fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// A tensor as the serializer sees it: made when its bytes are asked for, which is also when the
/// bytes made so far are reported.
struct Materialized<'a> {
    tensor: &'a LazyTensor,
    progress: &'a Progress<'a>,
}

/// Bytes made so far of `total`, reported to `report`.
struct Progress<'a> {
    done: Cell<u64>,
    total: u64,
    report: &'a dyn Fn(u64, u64),
}

impl View for Materialized<'_> {
    fn dtype(&self) -> Dtype {
        self.tensor.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let bytes = (self.tensor.make)();
        assert_eq!(
            bytes.len(),
            self.tensor.byte_len(),
            "tensor {} produced the wrong byte count",
            self.tensor.name
        );
        let p = self.progress;
        p.done.set(p.done.get() + bytes.len() as u64);
        (p.report)(p.done.get(), p.total);
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.tensor.byte_len()
    }
}

/// Writes `tensors` into `dir` as `model.safetensors`, or as `model-0000i-of-0000n.safetensors` plus
/// `model.safetensors.index.json` when they exceed `max_shard_bytes`. `progress(done, total)` gets the
/// tensor bytes made so far after each tensor (an 8B checkpoint takes minutes to make).
pub fn write_safetensors(
    dir: &Path,
    tensors: Vec<LazyTensor>,
    max_shard_bytes: usize,
    progress: &dyn Fn(u64, u64),
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut shards: Vec<Vec<LazyTensor>> = vec![Vec::new()];
    let mut current = 0usize;
    for tensor in tensors {
        let len = tensor.byte_len();
        if current > 0 && current + len > max_shard_bytes {
            shards.push(Vec::new());
            current = 0;
        }
        current += len;
        shards.last_mut().unwrap().push(tensor);
    }
    let count = shards.len();
    let progress = Progress {
        done: Cell::new(0),
        total: shards.iter().flatten().map(|t| t.byte_len() as u64).sum(),
        report: progress,
    };
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (i, shard) in shards.iter().enumerate() {
        let file = if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", i + 1, count)
        };
        for t in shard {
            weight_map.insert(t.name.clone(), file.clone().into());
            total += t.byte_len();
        }
        let views = shard.iter().map(|tensor| {
            let view = Materialized {
                tensor,
                progress: &progress,
            };
            (tensor.name.clone(), view)
        });
        safetensors::serialize_to_file(views, None, &dir.join(&file))
            .with_context(|| format!("writing {}", dir.join(&file).display()))?;
    }
    if count > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&index)?,
        )?;
    }
    Ok(())
}

/// Little-endian bytes of a slice of plain values.
pub fn le_bytes<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}
