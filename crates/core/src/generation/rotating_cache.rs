//! Window-limited KV cache for sliding-window attention layers, with the same storage behaviour
//! as mlx-lm's `RotatingKVCache` (keep = 0) so that keys come back in the same order and the
//! attention arithmetic matches the reference: a multi-token update re-orders the buffer
//! temporally, drops what falls out of the window (keeping `max_size - 1` old positions so every
//! new query still sees a full window) and appends; a single-token update writes in place into a
//! ring buffer of `max_size` slots (attention over it needs no mask: every slot is in-window).

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{ops, Array};

use super::kv_cache::{causal_mask, AttnMask, STEP};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

pub struct RotatingCache {
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
    max_size: i32,
    /// Next write slot in the buffer.
    idx: i32,
}

impl RotatingCache {
    pub fn new(max_size: i32) -> Self {
        RotatingCache { keys: None, values: None, offset: 0, max_size: max_size.max(1), idx: 0 }
    }

    pub fn offset(&self) -> i32 {
        self.offset
    }

    pub fn nbytes(&self) -> usize {
        self.keys.as_ref().map_or(0, |a| a.nbytes()) + self.values.as_ref().map_or(0, |a| a.nbytes())
    }

    pub fn update(&mut self, k: &Array, v: &Array) -> MlxResult<(Array, Array)> {
        if k.shape()[2] == 1 {
            self.update_in_place(k, v)
        } else {
            self.update_concat(k, v)
        }
    }

    pub fn mask(&self, n: i32, window: Option<i32>) -> MlxResult<AttnMask> {
        if n > 1 {
            let window = window.unwrap_or(self.max_size);
            let offset = (self.max_size - 1).min(self.offset);
            return Ok(if offset + n > window { AttnMask::Array(causal_mask(n, offset, Some(window))?) } else { AttnMask::Causal });
        }
        let Some(window) = window else { return Ok(AttnMask::None) };
        if self.offset >= window && self.max_size > window {
            // A window smaller than the buffer: mark the in-window slots of the ring.
            let idx = if self.idx >= self.max_size { 0 } else { self.idx };
            let size = if self.offset < self.max_size { self.offset + 1 } else { self.max_size };
            let m = ops::ge(&ops::arange::<_, i32>(0, size, 1)?, &Array::from_int(size - window))?;
            return Ok(AttnMask::Array(roll(&m, idx + 1)?));
        }
        Ok(AttnMask::None)
    }

    /// Buffer contents in temporal order (oldest first), unused tail dropped.
    fn temporal(&self, a: &Array) -> MlxResult<Array> {
        let len = a.shape()[2];
        if self.idx == len {
            Ok(a.clone())
        } else if self.idx < self.offset {
            ops::concatenate(&[a.try_index((.., .., self.idx.., ..))?, a.try_index((.., .., ..self.idx, ..))?], 2)
        } else {
            a.try_index((.., .., ..self.idx, ..))
        }
    }

    fn update_concat(&mut self, k: &Array, v: &Array) -> MlxResult<(Array, Array)> {
        match (&self.keys, &self.values) {
            (Some(keys), Some(values)) => {
                let (keys, values) = (self.temporal(keys)?, self.temporal(values)?);
                let trim = keys.shape()[2] - self.max_size + 1;
                let cat = |old: Array, new: &Array| -> MlxResult<Array> {
                    let old = if trim > 0 { old.try_index((.., .., trim.., ..))? } else { old };
                    ops::concatenate(&[old, new.clone()], 2)
                };
                self.keys = Some(cat(keys, k)?);
                self.values = Some(cat(values, v)?);
            }
            _ => {
                self.keys = Some(k.clone());
                self.values = Some(v.clone());
            }
        }
        self.offset += k.shape()[2];
        let keys = self.keys.clone().unwrap();
        self.idx = keys.shape()[2];
        Ok((keys, self.values.clone().unwrap()))
    }

    fn update_in_place(&mut self, k: &Array, v: &Array) -> MlxResult<(Array, Array)> {
        let prev = self.offset;
        let cur_len = self.keys.as_ref().map(|a| a.shape()[2]);
        if cur_len.map_or(true, |len| prev >= len && len < self.max_size) {
            let new_size = STEP.min(self.max_size - prev);
            let grow = |cur: &Option<Array>, new: &Array| -> MlxResult<Array> {
                let s = new.shape();
                let fresh = ops::zeros_dtype(&[s[0], s[1], new_size, s[3]], new.dtype())?;
                match cur {
                    Some(old) => ops::concatenate(&[old.clone(), fresh], 2),
                    None => Ok(fresh),
                }
            };
            self.keys = Some(grow(&self.keys, k)?);
            self.values = Some(grow(&self.values, v)?);
            self.idx = prev;
        }
        let len = self.keys.as_ref().unwrap().shape()[2];
        let trim = len - self.max_size;
        if trim > 0 {
            self.keys = Some(self.keys.as_ref().unwrap().try_index((.., .., trim.., ..))?);
            self.values = Some(self.values.as_ref().unwrap().try_index((.., .., trim.., ..))?);
            self.idx = self.max_size;
        }
        if self.idx == self.max_size {
            self.idx = 0;
        }
        let (keys, values) = (self.keys.as_mut().unwrap(), self.values.as_mut().unwrap());
        keys.try_index_mut((.., .., self.idx..self.idx + 1, ..), k)?;
        values.try_index_mut((.., .., self.idx..self.idx + 1, ..), v)?;
        self.offset += 1;
        self.idx += 1;
        if self.offset < keys.shape()[2] {
            Ok((keys.try_index((.., .., ..self.offset, ..))?, values.try_index((.., .., ..self.offset, ..))?))
        } else {
            Ok((keys.clone(), values.clone()))
        }
    }
}

/// `np.roll` of a 1-D array by `shift` to the right.
fn roll(a: &Array, shift: i32) -> MlxResult<Array> {
    let n = a.shape()[0];
    let s = shift.rem_euclid(n.max(1));
    if s == 0 {
        return Ok(a.clone());
    }
    ops::concatenate(&[a.try_index(n - s..)?, a.try_index(..n - s)?], 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pos: &[i32]) -> Array {
        let vals: Vec<f32> = pos.iter().map(|&p| p as f32).collect();
        Array::from_slice(&vals, &[1, 1, pos.len() as i32, 1])
    }

    fn positions(a: &Array) -> Vec<i32> {
        a.as_slice::<f32>().iter().map(|&x| x as i32).collect()
    }

    #[test]
    fn keeps_a_window_through_prefill_chunks_and_decode() {
        let mut c = RotatingCache::new(4);
        let (k, _) = c.update(&kv(&[0, 1, 2, 3, 4, 5]), &kv(&[0, 1, 2, 3, 4, 5])).unwrap();
        assert_eq!(positions(&k), vec![0, 1, 2, 3, 4, 5]);
        // The next chunk keeps max_size - 1 = 3 old positions.
        let (k, _) = c.update(&kv(&[6, 7]), &kv(&[6, 7])).unwrap();
        assert_eq!(positions(&k), vec![3, 4, 5, 6, 7]);
        // Decode: trimmed to 4 slots, then a ring.
        let (k, _) = c.update(&kv(&[8]), &kv(&[8])).unwrap();
        assert_eq!(positions(&k), vec![8, 5, 6, 7]);
        let (k, _) = c.update(&kv(&[9]), &kv(&[9])).unwrap();
        assert_eq!(positions(&k), vec![8, 9, 6, 7]);
        assert_eq!(c.offset(), 10);
        // A chunk after decode restores temporal order first.
        let (k, _) = c.update(&kv(&[10, 11]), &kv(&[10, 11])).unwrap();
        assert_eq!(positions(&k), vec![7, 8, 9, 10, 11]);
        assert!(matches!(c.mask(2, Some(4)).unwrap(), AttnMask::Array(_)));
        assert!(matches!(c.mask(1, Some(4)).unwrap(), AttnMask::None));
    }

    #[test]
    fn short_sequences_grow_like_a_normal_cache() {
        let mut c = RotatingCache::new(8);
        let (k, _) = c.update(&kv(&[0, 1]), &kv(&[0, 1])).unwrap();
        assert_eq!(positions(&k), vec![0, 1]);
        for p in 2..5 {
            let (k, _) = c.update(&kv(&[p]), &kv(&[p])).unwrap();
            assert_eq!(positions(&k), (0..=p).collect::<Vec<_>>());
        }
        assert!(matches!(c.mask(3, Some(8)).unwrap(), AttnMask::Causal));
    }
}
