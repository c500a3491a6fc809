//! Memory-mapped safetensors, single file or sharded with `model.safetensors.index.json`.
//!
//! Tensors are borrowed straight from the mapping: the weights exist once, in the page cache.

use anyhow::{Context, Result, bail};
use half::f16;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// All tensors of a checkpoint, by name.
pub struct Weights {
    shards: Vec<Arc<Mmap>>,
    index: HashMap<String, TensorInfo>,
}

#[derive(Debug, Clone)]
struct TensorInfo {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A borrowed tensor in the checkpoint's own dtype.
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
    map: &'a Arc<Mmap>,
    start: usize,
}

/// A typed view into a mapped file that keeps the mapping alive: lets the model own its weights without
/// copying them or borrowing from the loader.
pub struct MappedSlice<T> {
    map: Arc<Mmap>,
    start: usize,
    len: usize,
    _type: PhantomData<T>,
}

impl<T> MappedSlice<T> {
    /// Drops this range's pages from the process (they are re-read from the file if touched again):
    /// after repacking, the original bytes need not stay resident beside the repacked copy.
    pub fn release(self) {
        let bytes = self.len * std::mem::size_of::<T>();
        #[cfg(unix)]
        // SAFETY: the mapping is read-only and file-backed, so dropped pages come back unchanged from the
        // file; nothing holds references into this range (self is consumed).
        unsafe {
            let _ = self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.start,
                bytes,
            );
        }
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for MappedSlice<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        let bytes = &self.map[self.start..self.start + self.len * std::mem::size_of::<T>()];
        bytemuck::cast_slice(bytes)
    }
}

impl Weights {
    /// Maps `model.safetensors` or every shard listed in `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let index: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&index_path)?)
                    .with_context(|| format!("{} is not JSON", index_path.display()))?;
            let map = index["weight_map"]
                .as_object()
                .with_context(|| format!("{} has no weight_map", index_path.display()))?;
            let mut files: Vec<PathBuf> = map
                .values()
                .filter_map(|v| v.as_str())
                .map(|f| dir.join(f))
                .collect();
            files.sort();
            files.dedup();
            files
        } else {
            let single = dir.join("model.safetensors");
            if !single.is_file() {
                bail!(
                    "no weights in {}: expected model.safetensors or model.safetensors.index.json with its shards",
                    dir.display()
                );
            }
            vec![single]
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (shard, path) in files.into_iter().enumerate() {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open weight shard {}", path.display()))?;
            // SAFETY: the file is opened read-only; a checkpoint modified while mapped is the user's error.
            let mmap = unsafe { Mmap::map(&file) }
                .with_context(|| format!("cannot map {}", path.display()))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a valid safetensors file (truncated or corrupt?): {e}",
                    path.display()
                )
            })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let (start, end) = (
                    data_start + info.data_offsets.0,
                    data_start + info.data_offsets.1,
                );
                if end > mmap.len() {
                    bail!(
                        "{} is truncated: tensor {name} ends past the end of the file",
                        path.display()
                    );
                }
                index.insert(
                    name.clone(),
                    TensorInfo {
                        shard,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start,
                        end,
                    },
                );
            }
            shards.push(Arc::new(mmap));
        }
        Ok(Weights { shards, index })
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|i| i.shape.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// A tensor, checked for shape (dtype is the caller's concern).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<TensorRef<'_>> {
        let (key, info) = self
            .index
            .get_key_value(name)
            .with_context(|| format!("tensor {name} is missing from the checkpoint"))?;
        if info.shape != shape {
            bail!(
                "tensor {name} has shape {:?}, expected {:?} from config.json",
                info.shape,
                shape
            );
        }
        Ok(TensorRef {
            name: key,
            dtype: info.dtype,
            shape: &info.shape,
            bytes: &self.shards[info.shard][info.start..info.end],
            map: &self.shards[info.shard],
            start: info.start,
        })
    }
}

impl<'a> TensorRef<'a> {
    /// Converts a float tensor (f16, bf16, f32) to f32; used for the small ones (norms).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(match self.dtype {
            Dtype::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            Dtype::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => bail!(
                "tensor {} has dtype {other:?}, expected a float type",
                self.name
            ),
        })
    }

    /// The int32 tensor as u32 words (AWQ packs nibbles into them), still in the mapping.
    pub fn mapped_u32(&self) -> Result<MappedSlice<u32>> {
        if self.dtype != Dtype::I32 {
            bail!(
                "tensor {} has dtype {:?}, expected I32 (AWQ packed)",
                self.name,
                self.dtype
            );
        }
        self.mapped()
    }

    /// The f16 tensor, still in the mapping.
    pub fn mapped_f16(&self) -> Result<MappedSlice<f16>> {
        if self.dtype != Dtype::F16 {
            bail!(
                "tensor {} has dtype {:?}, expected F16",
                self.name,
                self.dtype
            );
        }
        self.mapped()
    }

    fn mapped<T: bytemuck::Pod>(&self) -> Result<MappedSlice<T>> {
        let size = std::mem::size_of::<T>();
        if !self.start.is_multiple_of(std::mem::align_of::<T>()) {
            bail!(
                "tensor {} starts at a misaligned offset in its file; re-save the checkpoint with the \
                 safetensors library, which aligns tensors",
                self.name
            );
        }
        Ok(MappedSlice {
            map: self.map.clone(),
            start: self.start,
            len: self.bytes.len() / size,
            _type: PhantomData,
        })
    }
}
