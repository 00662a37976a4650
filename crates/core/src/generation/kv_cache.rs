//! Per-layer key/value cache of one sequence: full (every position kept) for global-attention
//! layers, or window-limited ([`RotatingCache`]) for sliding-window layers.
//!
//! The full cache grows in blocks of `STEP` positions and is written in place (slice update), so
//! a decode step costs O(1) copies instead of re-concatenating the whole history; attention
//! reads the valid prefix `[.., :offset, :]`.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{ops, Array};

use super::rotating_cache::RotatingCache;

pub(crate) const STEP: i32 = 256;
/// Positions a full cache holds beyond its STEP blocks, so that its capacity is never a
/// multiple of 256. MLX's CUDA backend runs one-query attention over a slice of a cache whose
/// capacity is a multiple of 256 through cuDNN (a child graph updated for every layer of every
/// step) and otherwise through its vector kernel, which measured faster for our decode steps
/// (H100, 1B shape, 1-stream decode 375–437 vs 337–351 tok/s with cuDNN; bench/RESULTS-gpu.md).
/// Prompt chunks keep cuDNN: the capacity only decides the one-query case. Only for the head
/// sizes the vector kernel takes (64, 96, 128: MLX's `supports_sdpa_vector`); for others the pad
/// would trade cuDNN for MLX's unfused attention.
pub(crate) const CAPACITY_PAD: i32 = 16;

fn capacity_pad(head_dim: i32) -> i32 {
    if matches!(head_dim, 64 | 96 | 128) { CAPACITY_PAD } else { 0 }
}
type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// The attention mask a layer needs for the next `n` queries (mlx-lm's conventions).
pub enum AttnMask {
    None,
    Causal,
    /// bool [n, keys]: true = may attend.
    Array(Array),
}

pub struct KvCache {
    inner: Inner,
}

enum Inner {
    Full(FullCache),
    Rotating(RotatingCache),
}

impl Default for KvCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KvCache {
    /// A cache that keeps every position (global attention).
    pub fn new() -> Self {
        KvCache { inner: Inner::Full(FullCache::default()) }
    }

    /// A cache that keeps at most `max_size` positions (sliding-window attention).
    pub fn rotating(max_size: i32) -> Self {
        KvCache { inner: Inner::Rotating(RotatingCache::new(max_size)) }
    }

    /// Number of positions seen so far (the rotary offset of the next token).
    pub fn offset(&self) -> i32 {
        match &self.inner {
            Inner::Full(c) => c.offset,
            Inner::Rotating(c) => c.offset(),
        }
    }

    /// Appends `k`, `v` ([B, kv_heads, L, head_dim]) and returns the keys and values to attend to.
    pub fn update(&mut self, k: &Array, v: &Array) -> MlxResult<(Array, Array)> {
        match &mut self.inner {
            Inner::Full(c) => c.update(k, v),
            Inner::Rotating(c) => c.update(k, v),
        }
    }

    /// The mask for `n` new queries, computed BEFORE `update`; `window` limits how far back a
    /// query may look (itself and `window - 1` earlier positions).
    pub fn mask(&self, n: i32, window: Option<i32>) -> MlxResult<AttnMask> {
        match &self.inner {
            Inner::Full(c) => match window {
                Some(w) => Ok(AttnMask::Array(causal_mask(n, c.offset, Some(w))?)),
                None if n == 1 => Ok(AttnMask::None),
                None => Ok(AttnMask::Causal),
            },
            Inner::Rotating(c) => c.mask(n, window),
        }
    }

    /// A full cache's buffers and the positions they hold: (keys, values, offset) with keys and
    /// values [1, kv_heads, capacity, head_dim]. `None` for window-limited or empty caches.
    pub fn full_parts(&self) -> Option<(&Array, &Array, i32)> {
        match &self.inner {
            Inner::Full(FullCache { keys: Some(k), values: Some(v), offset }) => Some((k, v, *offset)),
            _ => None,
        }
    }

    /// A full cache over existing buffers ([1, kv_heads, capacity, head_dim]) whose first
    /// `offset` positions are filled.
    pub fn from_full(keys: Array, values: Array, offset: i32) -> Self {
        KvCache { inner: Inner::Full(FullCache { keys: Some(keys), values: Some(values), offset }) }
    }

    /// Bytes held by the cache buffers.
    pub fn nbytes(&self) -> usize {
        match &self.inner {
            Inner::Full(c) => c.keys.as_ref().map_or(0, |a| a.nbytes()) + c.values.as_ref().map_or(0, |a| a.nbytes()),
            Inner::Rotating(c) => c.nbytes(),
        }
    }
}

/// bool [n, offset + n]: query i (absolute position offset + i) may see key j when j <= i and,
/// with a window, i - j < window.
pub fn causal_mask(n: i32, offset: i32, window: Option<i32>) -> MlxResult<Array> {
    let rinds = ops::arange::<_, i32>(0, offset + n, 1)?;
    let linds = ops::arange::<_, i32>(offset, offset + n, 1)?.reshape(&[n, 1])?;
    let rinds = rinds.reshape(&[1, offset + n])?;
    let mask = ops::ge(&linds, &rinds)?;
    match window {
        Some(w) => ops::logical_and(&mask, &ops::lt(&linds, &ops::add(&rinds, &Array::from_int(w))?)?),
        None => Ok(mask),
    }
}

#[derive(Default)]
struct FullCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl FullCache {
    fn update(&mut self, k: &Array, v: &Array) -> MlxResult<(Array, Array)> {
        let prev = self.offset;
        let n = k.shape()[2];
        let needs_grow = match &self.keys {
            None => true,
            Some(keys) => prev + n > keys.shape()[2],
        };
        if needs_grow {
            // room for the new positions in whole STEP blocks, plus the pad
            let capacity = (prev + n + STEP - 1) / STEP * STEP + capacity_pad(k.shape()[3]);
            let grow = |cur: &Option<Array>, new: &Array| -> MlxResult<Array> {
                let s = new.shape();
                let fresh = ops::zeros_dtype(&[s[0], s[1], capacity - prev, s[3]], new.dtype())?;
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
}

impl KvCache {
    /// A cache holding the first `n` positions of `other` (views of its buffers: MLX arrays are
    /// immutable, so later writes to either cache never affect the other). `None` for
    /// window-limited caches, whose buffers no longer hold every position.
    pub fn prefix_of(other: &KvCache, n: i32) -> Option<MlxResult<KvCache>> {
        let Inner::Full(c) = &other.inner else { return None };
        let n = n.min(c.offset);
        let out = match (&c.keys, &c.values) {
            (Some(k), Some(v)) if n > 0 => (|| {
                Ok(KvCache {
                    inner: Inner::Full(FullCache {
                        keys: Some(k.try_index((.., .., ..n, ..))?),
                        values: Some(v.try_index((.., .., ..n, ..))?),
                        offset: n,
                    }),
                })
            })(),
            _ => Ok(KvCache::new()),
        };
        Some(out)
    }

    /// Forgets the newest `n` positions (speculative decoding's rollback); returns how many were
    /// dropped. The buffers keep their contents; the next update overwrites them. Window-limited
    /// caches cannot roll back (0).
    pub fn trim(&mut self, n: i32) -> i32 {
        match &mut self.inner {
            Inner::Full(c) => {
                let n = n.clamp(0, c.offset);
                c.offset -= n;
                n
            }
            Inner::Rotating(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(n: i32, head_dim: i32, fill: f32) -> Array {
        ops::full::<f32>(&[1, 2, n, head_dim], Array::from_f32(fill)).unwrap()
    }

    /// The capacity stays off multiples of 256 however the cache grows (MLX's CUDA backend would
    /// otherwise take cuDNN for one-query attention, see `CAPACITY_PAD`), and the positions
    /// written survive each growth.
    #[test]
    fn capacity_is_never_a_multiple_of_256_and_growth_keeps_positions() {
        let mut c = KvCache::new();
        let mut written = 0;
        for (step, n) in [1, 255, 16, 1, 240, 300, 1, 1].into_iter().enumerate() {
            let (keys, _) = c.update(&kv(n, 64, step as f32), &kv(n, 64, -(step as f32))).unwrap();
            written += n;
            let (kbuf, _, offset) = c.full_parts().unwrap();
            let capacity = kbuf.shape()[2];
            assert_eq!(offset, written);
            assert!(capacity >= offset && capacity % 256 != 0, "capacity {capacity} after {written} positions");
            assert_eq!(keys.shape()[2], written);
            // the newest block holds this step's value, the first position the first step's
            let last = keys.try_index((.., .., written - 1, ..)).unwrap();
            let first = keys.try_index((.., .., 0, ..)).unwrap();
            assert_eq!(ops::max(&last, None).unwrap().item_cast::<f32>(), step as f32);
            assert_eq!(ops::max(&first, None).unwrap().item_cast::<f32>(), 0.0);
        }
    }

    /// Head sizes MLX's vector kernel does not take keep whole 256-position blocks (cuDNN).
    #[test]
    fn other_head_sizes_keep_whole_blocks() {
        let mut c = KvCache::new();
        c.update(&kv(300, 80, 1.0), &kv(300, 80, 1.0)).unwrap();
        assert_eq!(c.full_parts().unwrap().0.shape()[2], 512);
    }
}
