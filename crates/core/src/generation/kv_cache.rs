//! Per-layer key/value cache of one sequence. Storage grows in blocks of `STEP` positions and is
//! written in place (slice update), so a decode step costs O(1) copies instead of re-concatenating
//! the whole history; the attention reads the valid prefix `[.., :offset, :]`.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{ops, Array};

const STEP: i32 = 256;

#[derive(Default)]
pub struct KvCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions already cached (the rotary offset of the next token).
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// Appends `k`, `v` ([B, kv_heads, L, head_dim]) and returns the full cached keys and values.
    pub fn update(&mut self, k: &Array, v: &Array) -> Result<(Array, Array), mlx_rs::error::Exception> {
        let prev = self.offset;
        let n = k.shape()[2];
        let needs_grow = match &self.keys {
            None => true,
            Some(keys) => prev + n > keys.shape()[2],
        };
        if needs_grow {
            let blocks = (n + STEP - 1) / STEP;
            let grow = |cur: &Option<Array>, new: &Array| -> Result<Array, mlx_rs::error::Exception> {
                let s = new.shape();
                let fresh = ops::zeros_dtype(&[s[0], s[1], blocks * STEP, s[3]], new.dtype())?;
                match cur {
                    Some(old) => ops::concatenate(&[old.try_index((.., .., ..prev, ..))?, fresh], 2),
                    None => Ok(fresh),
                }
            };
            self.keys = Some(grow(&self.keys, k)?);
            self.values = Some(grow(&self.values, v)?);
        }
        self.offset += n;
        let (keys, values) = (self.keys.as_mut().unwrap(), self.values.as_mut().unwrap());
        keys.try_index_mut((.., .., prev..self.offset, ..), k)?;
        values.try_index_mut((.., .., prev..self.offset, ..), v)?;
        Ok((keys.try_index((.., .., ..self.offset, ..))?, values.try_index((.., .., ..self.offset, ..))?))
    }

    /// Bytes held by the cache buffers.
    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, |a| a.nbytes()) + self.values.as_ref().map_or(0, |a| a.nbytes())
    }
}

impl KvCache {
    /// A cache holding the first `n` positions of `other` (views of its buffers: MLX arrays are
    /// immutable, so later writes to either cache never affect the other).
    pub fn prefix_of(other: &KvCache, n: i32) -> Result<KvCache, mlx_rs::error::Exception> {
        let n = n.min(other.offset);
        match (&other.keys, &other.values) {
            (Some(k), Some(v)) if n > 0 => Ok(KvCache {
                keys: Some(k.try_index((.., .., ..n, ..))?),
                values: Some(v.try_index((.., .., ..n, ..))?),
                offset: n,
            }),
            _ => Ok(KvCache::new()),
        }
    }
}

impl KvCache {
    /// Forgets the newest `n` positions (speculative decoding's rollback). The buffers keep
    /// their contents; the next update overwrites them.
    pub fn trim(&mut self, n: i32) -> i32 {
        let n = n.clamp(0, self.offset);
        self.offset -= n;
        n
    }
}
