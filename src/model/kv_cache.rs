//! Keys and values of every past position, preallocated for the whole context (no per-step copying), and
//! the token ids they belong to, so a later prompt can reuse the longest common prefix.

pub struct KvCache {
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Per layer, [kv_heads][capacity][head_dim]: each head's positions are contiguous for attention.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let size = kv_heads * capacity * head_dim;
        KvCache {
            capacity,
            kv_heads,
            head_dim,
            keys: (0..layers).map(|_| vec![0f32; size]).collect(),
            values: (0..layers).map(|_| vec![0f32; size]).collect(),
            tokens: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The ids whose keys and values are cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets positions from `len` on (the rest stays valid).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Records the ids of positions just written by every layer.
    pub fn commit(&mut self, ids: &[u32]) {
        self.tokens.extend_from_slice(ids);
    }

    /// Stores k and v ([m][kv_heads·head_dim]) of one layer for positions start..start+m.
    pub fn write(&mut self, layer: usize, start: usize, k: &[f32], v: &[f32]) {
        let (hd, width) = (self.head_dim, self.kv_heads * self.head_dim);
        for (t, (kt, vt)) in k.chunks_exact(width).zip(v.chunks_exact(width)).enumerate() {
            for h in 0..self.kv_heads {
                let at = (h * self.capacity + start + t) * hd;
                self.keys[layer][at..at + hd].copy_from_slice(&kt[h * hd..(h + 1) * hd]);
                self.values[layer][at..at + hd].copy_from_slice(&vt[h * hd..(h + 1) * hd]);
            }
        }
    }

    /// Keys and values of one head for positions 0..len.
    pub fn head(&self, layer: usize, head: usize, len: usize) -> (&[f32], &[f32]) {
        let at = head * self.capacity * self.head_dim;
        let end = at + len * self.head_dim;
        (&self.keys[layer][at..end], &self.values[layer][at..end])
    }
}
