//! Stacked KV storage for the decode rows of one model that are stepped together.
//!
//! With one cache per stream, a batched decode step costs a handful of MLX operations per row
//! and layer (split off the row, rotate it at its own offset, append it to its own cache, attend
//! over its own keys, stitch the rows back together): at 16 streams that is thousands of tiny
//! kernels per step and the GPU idles between them. Here every resident row owns a slot of one
//! buffer per layer, `[slots, kv_heads, capacity, head_dim]`, so a step costs a fixed number of
//! operations per layer whatever the row count: one rotary call with per-row offsets, one write
//! of the new keys/values, one attention over all rows with a mask that hides each row's padding.
//!
//! Rows are right-aligned: every row's next token goes to the same column (`idx`), a shorter row
//! starts later (its left padding). So the step's write is one contiguous slice update for all
//! rows (instead of a scatter to per-row positions), and a step over rows of equal
//! length needs no mask. A longer row joining shifts the others right once; when the rows that
//! remain all start late (the long ones left), the padding they share is dropped, so the buffer
//! stays as long as the longest row, not as long as the batch has lived.
//!
//! A stream moves its cache in when it starts decoding beside other rows (`admit`) and takes it
//! back out, as an ordinary per-stream cache, when it ends (`evict`), so prompt-prefix reuse and
//! every single-stream path keep seeing plain caches. Slots stay dense (`0..rows`): an evicted
//! row's slot is filled with the last row.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::{ops, Array, Dtype};

use super::kv_cache::{KvCache, STEP};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Slots added at a time when the buffer is full.
const SLOT_STEP: i32 = 4;

pub struct BatchKv {
    /// Per layer: (keys, values), each [slot_cap, kv_heads, cap, head_dim].
    layers: Vec<(Array, Array)>,
    /// The column every row's next token is written at.
    idx: i32,
    /// The first column each active row holds (its left padding), in slot order; the row holds
    /// `idx - left` positions, which is also its next token's rotary offset.
    left: Vec<i32>,
    /// The stream each active slot belongs to.
    owners: Vec<String>,
    slot_cap: i32,
    cap: i32,
    kv_heads: i32,
    head_dim: i32,
    dtype: Dtype,
    /// What the step being built shares across layers (`begin_step` .. `end_step`).
    step: Option<StepIndex>,
    /// The last step's greedy ids of all rows ([rows], on the device) and that batch sample's
    /// id: when every row feeds its entry back at its own slot, the array is the next input.
    pub last_sample: Option<(u64, Array)>,
}

struct StepIndex {
    /// int32 [rows]: each row's position for the new token.
    positions: Array,
    /// bool [rows, 1, 1, idx + 1 - start]: which of the attended columns each row holds; `None`
    /// when all rows start at the same column (nothing to hide).
    mask: Option<Array>,
    /// Columns attended this step: `start..=idx` (from the earliest-starting row's first).
    start: i32,
}

impl Default for BatchKv {
    fn default() -> Self {
        BatchKv {
            layers: Vec::new(),
            idx: 0,
            left: Vec::new(),
            owners: Vec::new(),
            slot_cap: 0,
            cap: 0,
            kv_heads: 0,
            head_dim: 0,
            dtype: Dtype::Float32,
            step: None,
            last_sample: None,
        }
    }
}

impl BatchKv {
    pub fn rows(&self) -> usize {
        self.owners.len()
    }

    pub fn slot_of(&self, owner: &str) -> Option<usize> {
        self.owners.iter().position(|o| o == owner)
    }

    pub fn owners(&self) -> &[String] {
        &self.owners
    }

    /// Bytes held by the stacked buffers.
    pub fn nbytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| k.nbytes() + v.nbytes()).sum()
    }

    /// Positions held by each row, in slot order.
    pub fn lengths(&self) -> Vec<i32> {
        self.left.iter().map(|l| self.idx - l).collect()
    }

    /// Moves a stream's per-layer cache into a new slot. The cache comes back unchanged (`Err`)
    /// when it cannot be stacked: a window-limited layer, an empty cache, or a shape that differs
    /// from the rows already here.
    pub fn admit(&mut self, owner: &str, cache: Vec<KvCache>) -> MlxResult<Result<usize, Vec<KvCache>>> {
        let Some(parts) = cache.iter().map(KvCache::full_parts).collect::<Option<Vec<_>>>() else { return Ok(Err(cache)) };
        let Some(&(k0, _, len)) = parts.first() else { return Ok(Err(cache)) };
        if len == 0 || parts.iter().any(|p| p.2 != len) {
            return Ok(Err(cache));
        }
        let s = k0.shape();
        if self.layers.is_empty() {
            self.kv_heads = s[1];
            self.head_dim = s[3];
            self.dtype = k0.dtype();
            self.idx = len;
        } else if parts.len() != self.layers.len() || s[1] != self.kv_heads || s[3] != self.head_dim || k0.dtype() != self.dtype {
            return Ok(Err(cache));
        } else if len > self.idx {
            self.shift_right(len - self.idx)?;
        }
        let slot = self.owners.len() as i32;
        self.reserve(slot + 1, self.idx + 1, parts.len())?;
        let first = self.idx - len;
        for (layer, (k, v, _)) in parts.iter().enumerate() {
            let (keys, values) = &mut self.layers[layer];
            keys.try_index_mut((slot..slot + 1, .., first..self.idx, ..), k.try_index((.., .., ..len, ..))?)?;
            values.try_index_mut((slot..slot + 1, .., first..self.idx, ..), v.try_index((.., .., ..len, ..))?)?;
        }
        self.left.push(first);
        self.owners.push(owner.to_string());
        Ok(Ok(slot as usize))
    }

    /// Takes a row out: its keys/values as an ordinary cache (a copy, so it does not pin the
    /// stacked buffers) when `keep`, and the last row moves into its slot.
    pub fn evict(&mut self, slot: usize, keep: bool) -> MlxResult<Option<Vec<KvCache>>> {
        let (first, len) = (self.left[slot], self.idx - self.left[slot]);
        let out = if keep {
            let room = round_up(len + 1);
            let pad = ops::zeros_dtype(&[1, self.kv_heads, room - len, self.head_dim], self.dtype)?;
            let mut caches = Vec::with_capacity(self.layers.len());
            for (keys, values) in &self.layers {
                let s = slot as i32;
                let k = ops::concatenate(&[keys.try_index((s..s + 1, .., first..self.idx, ..))?, pad.clone()], 2)?;
                let v = ops::concatenate(&[values.try_index((s..s + 1, .., first..self.idx, ..))?, pad.clone()], 2)?;
                caches.push(KvCache::from_full(k, v, len));
            }
            Some(caches)
        } else {
            None
        };
        let last = self.owners.len() - 1;
        if slot != last {
            let (dst, src) = (slot as i32, last as i32);
            for (keys, values) in &mut self.layers {
                let k = keys.try_index((src..src + 1, .., .., ..))?;
                let v = values.try_index((src..src + 1, .., .., ..))?;
                keys.try_index_mut((dst..dst + 1, .., .., ..), &k)?;
                values.try_index_mut((dst..dst + 1, .., .., ..), &v)?;
            }
        }
        self.left.swap_remove(slot);
        self.owners.swap_remove(slot);
        if self.owners.is_empty() {
            // Nothing resident: free the buffers.
            self.layers.clear();
            self.slot_cap = 0;
            self.cap = 0;
            self.idx = 0;
        } else {
            self.drop_shared_padding()?;
        }
        Ok(out)
    }

    /// Moves every row `by` columns to the right (a longer row is joining).
    fn shift_right(&mut self, by: i32) -> MlxResult<()> {
        let zeros = ops::zeros_dtype(&[self.slot_cap, self.kv_heads, by, self.head_dim], self.dtype)?;
        for (k, v) in &mut self.layers {
            *k = ops::concatenate(&[zeros.clone(), k.clone()], 2)?;
            *v = ops::concatenate(&[zeros.clone(), v.clone()], 2)?;
        }
        self.cap += by;
        self.idx += by;
        for l in &mut self.left {
            *l += by;
        }
        Ok(())
    }

    /// Drops the columns no row holds any more (after an eviction), once they add up to a block
    /// — or whenever every remaining row starts at the same late column. Such rows need no mask,
    /// and an unmasked slice that does not start at column 0 is read wrongly by MLX 0.32's CUDA
    /// decode attention: when the rows fill the buffer it takes cuDNN's path, which rebuilds the
    /// whole buffer from the slice's offset as if the slice began at column 0 (`unslice_kv`),
    /// attending to the padding instead of the newest positions. (Only an eviction can leave all
    /// rows starting late: admission never does.)
    fn drop_shared_padding(&mut self) -> MlxResult<()> {
        let unused = self.left.iter().copied().min().unwrap_or(0);
        let unmasked = self.left.iter().all(|&l| l == unused);
        if unused == 0 || (unused < STEP && !unmasked) {
            return Ok(());
        }
        // Copied out, not kept as views with an offset into the old buffers: later steps write
        // into these in place, and offset views are where MLX's CUDA backend went wrong before
        // (models/linear.rs::split_last).
        for (k, v) in &mut self.layers {
            *k = k.try_index((.., .., unused.., ..))?.contiguous()?;
            *v = v.try_index((.., .., unused.., ..))?.contiguous()?;
        }
        self.cap -= unused;
        self.idx -= unused;
        for l in &mut self.left {
            *l -= unused;
        }
        Ok(())
    }

    /// Grows the buffers to hold at least `slots` rows of `len` columns.
    fn reserve(&mut self, slots: i32, len: i32, n_layers: usize) -> MlxResult<()> {
        if self.layers.is_empty() {
            self.slot_cap = slots.max(SLOT_STEP);
            self.cap = round_up(len);
            let zeros = ops::zeros_dtype(&[self.slot_cap, self.kv_heads, self.cap, self.head_dim], self.dtype)?;
            self.layers = (0..n_layers).map(|_| (zeros.clone(), zeros.clone())).collect();
            return Ok(());
        }
        if slots > self.slot_cap {
            let extra = (slots - self.slot_cap).max(self.slot_cap).max(SLOT_STEP);
            let zeros = ops::zeros_dtype(&[extra, self.kv_heads, self.cap, self.head_dim], self.dtype)?;
            for (k, v) in &mut self.layers {
                *k = ops::concatenate(&[k.clone(), zeros.clone()], 0)?;
                *v = ops::concatenate(&[v.clone(), zeros.clone()], 0)?;
            }
            self.slot_cap += extra;
        }
        if len > self.cap {
            let extra = round_up(len) - self.cap;
            let zeros = ops::zeros_dtype(&[self.slot_cap, self.kv_heads, extra, self.head_dim], self.dtype)?;
            for (k, v) in &mut self.layers {
                *k = ops::concatenate(&[k.clone(), zeros.clone()], 2)?;
                *v = ops::concatenate(&[v.clone(), zeros.clone()], 2)?;
            }
            self.cap += extra;
        }
        Ok(())
    }

    /// Prepares one decode step of every row (one new token each): room for it and the arrays
    /// every layer shares.
    pub fn begin_step(&mut self) -> MlxResult<()> {
        let rows = self.left.len() as i32;
        self.reserve(rows, self.idx + 1, self.layers.len())?;
        let start = self.left.iter().copied().min().unwrap_or(0);
        let len = self.idx + 1 - start;
        let mask = if self.left.iter().all(|&l| l == start) {
            None
        } else {
            let allowed: Vec<bool> = self.left.iter().flat_map(|&l| (start..=self.idx).map(move |j| j >= l)).collect();
            Some(Array::from_slice(&allowed, &[rows, 1, 1, len]))
        };
        let positions: Vec<i32> = self.lengths();
        self.step = Some(StepIndex { positions: Array::from_slice(&positions, &[rows]), mask, start });
        Ok(())
    }

    /// The rows' rotary offsets for this step (int32 [rows]).
    pub fn positions(&self) -> &Array {
        &self.step.as_ref().expect("begin_step before a batched layer").positions
    }

    /// Writes one layer's new keys/values (k, v: [rows, kv_heads, 1, head_dim]) at the shared
    /// column and returns what that layer attends to: keys and values [rows, kv_heads, columns,
    /// head_dim] and the mask hiding the columns a row does not hold.
    pub fn update(&mut self, layer: usize, k: &Array, v: &Array) -> MlxResult<(Array, Array, Option<Array>)> {
        let step = self.step.as_ref().expect("begin_step before a batched layer");
        let rows = self.left.len() as i32;
        let (at, start) = (self.idx, step.start);
        let (keys, values) = &mut self.layers[layer];
        keys.try_index_mut((..rows, .., at..at + 1, ..), k.as_dtype(self.dtype)?)?;
        values.try_index_mut((..rows, .., at..at + 1, ..), v.as_dtype(self.dtype)?)?;
        Ok((keys.try_index((..rows, .., start..at + 1, ..))?, values.try_index((..rows, .., start..at + 1, ..))?, step.mask.clone()))
    }

    /// Ends the step: every row now holds one more position.
    pub fn end_step(&mut self) {
        self.step = None;
        self.idx += 1;
    }

    /// Drops the step's arrays without advancing (the pass failed while being built).
    pub fn abandon_step(&mut self) {
        self.step = None;
    }
}

fn round_up(len: i32) -> i32 {
    ((len + STEP - 1) / STEP).max(1) * STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_with(n: i32, layers: usize, seed: u64) -> (Vec<KvCache>, Vec<(Array, Array)>) {
        let mut caches = Vec::new();
        let mut raw = Vec::new();
        for l in 0..layers {
            let key = mlx_rs::random::key(seed * 10 + l as u64).unwrap();
            let k = mlx_rs::random::normal::<f32>(&[1, 2, n, 4], None, None, Some(&key)).unwrap();
            let v = ops::multiply(&k, &Array::from_f32(-2.0)).unwrap();
            let mut c = KvCache::new();
            c.update(&k, &v).unwrap();
            caches.push(c);
            raw.push((k, v));
        }
        (caches, raw)
    }

    fn max_diff(a: &Array, b: &Array) -> f32 {
        ops::max(&ops::abs(&ops::subtract(a, b).unwrap()).unwrap(), None).unwrap().item_cast::<f32>()
    }

    /// Rows of different lengths: each step writes at each row's own position, the mask hides
    /// the rest, and an evicted row comes back holding exactly its own history plus the steps.
    #[test]
    fn rows_keep_their_own_history_through_steps_and_eviction() {
        let mut b = BatchKv::default();
        let (c0, raw0) = cache_with(3, 2, 1);
        let (c1, raw1) = cache_with(7, 2, 2);
        let (c2, _) = cache_with(5, 2, 3);
        assert_eq!(b.admit("a", c0).unwrap().ok(), Some(0));
        assert_eq!(b.admit("b", c1).unwrap().ok(), Some(1));
        assert_eq!(b.admit("c", c2).unwrap().ok(), Some(2));
        b.begin_step().unwrap();
        assert_eq!(b.positions().as_slice::<i32>(), &[3, 7, 5]);
        let newk = mlx_rs::random::normal::<f32>(&[3, 2, 1, 4], None, None, Some(&mlx_rs::random::key(9).unwrap())).unwrap();
        let (keys, _values, mask) = b.update(0, &newk, &newk).unwrap();
        b.update(1, &newk, &newk).unwrap();
        b.end_step();
        assert_eq!(keys.shape(), &[3, 2, 8, 4]);
        let mask = mask.expect("rows of different lengths need a mask");
        let m: Vec<bool> = mask.as_slice::<bool>().to_vec();
        // Rows are right-aligned: "a" (3 positions + the new one) holds the last 4 columns.
        assert_eq!(&m[0..8], &[false, false, false, false, true, true, true, true]);
        assert_eq!(&m[8..16], &[true; 8]);
        assert_eq!(&m[16..24], &[false, false, true, true, true, true, true, true]);
        // Row "a": its 3 positions, then the new key at position 3.
        let a = keys.try_index((0..1, .., 4.., ..)).unwrap();
        let want = ops::concatenate(&[raw0[0].0.clone(), newk.try_index((0..1, .., .., ..)).unwrap()], 2).unwrap();
        assert_eq!(max_diff(&a, &want), 0.0);
        // Evicting "a" moves "c" into slot 0 and hands back a's cache with 4 positions.
        let back = b.evict(0, true).unwrap().unwrap();
        assert_eq!(b.owners(), &["c".to_string(), "b".to_string()]);
        assert_eq!(back[0].offset(), 4);
        let (bk, _, _) = back[0].full_parts().unwrap();
        assert_eq!(max_diff(&bk.try_index((.., .., ..4, ..)).unwrap(), &want), 0.0);
        // "b" is untouched by the move: its 7 positions plus its new key.
        b.begin_step().unwrap();
        assert_eq!(b.positions().as_slice::<i32>(), &[6, 8]);
        let (keys, values, _) = b.update(0, &newk.try_index((..2, .., .., ..)).unwrap(), &newk.try_index((..2, .., .., ..)).unwrap()).unwrap();
        b.end_step();
        let brow = keys.try_index((1..2, .., ..7, ..)).unwrap();
        assert_eq!(max_diff(&brow, &raw1[0].0), 0.0);
        let bvals = values.try_index((1..2, .., ..7, ..)).unwrap();
        assert_eq!(max_diff(&bvals, &raw1[0].1), 0.0);
        b.evict(0, false).unwrap();
        b.evict(0, false).unwrap();
        assert_eq!(b.rows(), 0);
        assert_eq!(b.nbytes(), 0, "an empty batch frees its buffers");
    }

    /// A longer row joining moves the others right; once the long row leaves, the padding every
    /// remaining row shares is dropped (the buffer shrinks back) and contents survive both moves.
    #[test]
    fn longer_rows_shift_and_shared_padding_is_dropped() {
        let mut b = BatchKv::default();
        let (short, raw_s) = cache_with(3, 1, 5);
        let (long, _) = cache_with(STEP + 44, 1, 6);
        assert!(b.admit("s", short).unwrap().is_ok());
        assert!(b.admit("l", long).unwrap().is_ok());
        assert_eq!(b.lengths(), vec![3, STEP + 44]);
        let one = Array::ones::<f32>(&[2, 2, 1, 4]).unwrap();
        b.begin_step().unwrap();
        assert_eq!(b.positions().as_slice::<i32>(), &[3, STEP + 44]);
        b.update(0, &one, &one).unwrap();
        b.end_step();
        let wide = b.nbytes();
        b.evict(1, false).unwrap();
        assert_eq!(b.lengths(), vec![4]);
        assert!(b.nbytes() < wide, "the shared padding was not dropped: {} vs {wide} bytes", b.nbytes());
        b.begin_step().unwrap();
        let (keys, _, mask) = b.update(0, &one.try_index((..1, .., .., ..)).unwrap(), &one.try_index((..1, .., .., ..)).unwrap()).unwrap();
        b.end_step();
        assert!(mask.is_none(), "one row needs no mask");
        assert_eq!(keys.shape(), &[1, 2, 5, 4], "attention spans the row's own 5 positions only");
        let back = b.evict(0, true).unwrap().unwrap();
        assert_eq!(back[0].offset(), 5);
        let (k, _, _) = back[0].full_parts().unwrap();
        assert_eq!(max_diff(&k.try_index((.., .., ..3, ..)).unwrap(), &raw_s[0].0), 0.0);
        assert_eq!(max_diff(&k.try_index((.., .., 3..5, ..)).unwrap(), &Array::ones::<f32>(&[1, 2, 2, 4]).unwrap()), 0.0);
    }

    /// A step with no mask attends from column 0: rows that all start late by the same amount
    /// (the longer row they were padded for has left) have that padding dropped first, with
    /// their contents kept.
    #[test]
    fn unmasked_steps_attend_from_column_zero() {
        let mut b = BatchKv::default();
        let (short, raw_s) = cache_with(3, 1, 7);
        let (short2, raw_s2) = cache_with(3, 1, 8);
        let (long, _) = cache_with(40, 1, 9);
        for (name, c) in [("a", short), ("b", short2), ("l", long)] {
            assert!(b.admit(name, c).unwrap().is_ok());
        }
        b.evict(2, false).unwrap();
        assert_eq!(b.lengths(), vec![3, 3]);
        b.begin_step().unwrap();
        assert_eq!(b.step.as_ref().unwrap().start, 0, "an unmasked step must attend from the buffer's column 0");
        let one = Array::ones::<f32>(&[2, 2, 1, 4]).unwrap();
        let (keys, values, mask) = b.update(0, &one, &one).unwrap();
        b.end_step();
        assert!(mask.is_none());
        assert_eq!(keys.shape(), &[2, 2, 4, 4], "the slice holds the rows' 4 positions only");
        assert_eq!(max_diff(&keys.try_index((0..1, .., ..3, ..)).unwrap(), &raw_s[0].0), 0.0);
        assert_eq!(max_diff(&values.try_index((1..2, .., ..3, ..)).unwrap(), &raw_s2[0].1), 0.0);
        assert_eq!(max_diff(&keys.try_index((.., .., 3.., ..)).unwrap(), &one), 0.0);
    }

    /// Window-limited caches and mismatched shapes are refused and handed back intact.
    #[test]
    fn refuses_caches_it_cannot_stack() {
        let mut b = BatchKv::default();
        let mut rot = KvCache::rotating(4);
        let k = Array::zeros::<f32>(&[1, 2, 3, 4]).unwrap();
        rot.update(&k, &k).unwrap();
        assert!(b.admit("r", vec![rot]).unwrap().is_err());
        let (c, _) = cache_with(3, 2, 1);
        assert!(b.admit("a", c).unwrap().is_ok());
        let (c3, _) = cache_with(3, 3, 2);
        match b.admit("x", c3).unwrap() {
            Err(back) => assert_eq!(back.len(), 3),
            Ok(_) => panic!("a cache with another layer count was stacked"),
        }
        assert_eq!(b.rows(), 1);
    }

    /// Growing past the first block of positions and slots keeps every row's contents.
    #[test]
    fn growth_keeps_contents() {
        let mut b = BatchKv::default();
        let mut raws = Vec::new();
        for i in 0..6 {
            let (c, raw) = cache_with(STEP - 1 + i, 1, 20 + i as u64);
            assert!(b.admit(&format!("s{i}"), c).unwrap().is_ok());
            raws.push(raw);
        }
        let one = Array::ones::<f32>(&[6, 2, 1, 4]).unwrap();
        for _ in 0..3 {
            b.begin_step().unwrap();
            b.update(0, &one, &one).unwrap();
            b.end_step();
        }
        for (i, raw) in raws.iter().enumerate() {
            let slot = b.slot_of(&format!("s{i}")).unwrap();
            let back = b.evict(slot, true).unwrap().unwrap();
            let n = STEP - 1 + i as i32;
            assert_eq!(back[0].offset(), n + 3);
            let (k, _, _) = back[0].full_parts().unwrap();
            assert_eq!(max_diff(&k.try_index((.., .., ..n, ..)).unwrap(), &raw[0].0), 0.0);
            assert_eq!(max_diff(&k.try_index((.., .., n..n + 3, ..)).unwrap(), &Array::ones::<f32>(&[1, 2, 3, 4]).unwrap()), 0.0);
        }
    }
}
