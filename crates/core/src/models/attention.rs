//! Grouped-query attention over a batched forward pass, shared by the families added after
//! llama/gemma3 (phi3, the mixture-of-experts decoders): the projections are computed once for
//! all tokens of all segments, then each segment is split off, optionally q/k RMS-normed per
//! head, rotated at its own cache offset, appended to its own KV cache and attended causally.

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array};

use super::causal::Segment;
use super::config::ModelConfig;
use super::rope::{Rope, RotaryTables};
use crate::generation::batch_kv::BatchKv;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// The shape and per-layer parameters of one attention layer.
pub(crate) struct AttnSpec<'a> {
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub scale: f32,
    pub rope: &'a Rope,
    /// Per-head RMSNorm weights for queries and keys (qwen3-style), with their epsilon.
    pub qk_norm: Option<(&'a Array, &'a Array, f32)>,
    /// Explicit rotary tables replacing `rope` (one segment; multimodal positions).
    pub tables: Option<&'a RotaryTables>,
}

impl<'a> AttnSpec<'a> {
    /// The common case: the config's head counts and head_dim, scale 1/sqrt(head_dim), `rope`,
    /// per-head q/k RMSNorm when both weights are given (with the config's epsilon).
    pub(crate) fn standard(c: &ModelConfig, rope: &'a Rope, q_norm: Option<&'a Array>, k_norm: Option<&'a Array>) -> Self {
        AttnSpec {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            scale: (c.head_dim as f32).powf(-0.5),
            rope,
            qk_norm: q_norm.zip(k_norm).map(|(q, k)| (q, k, c.rms_norm_eps)),
            tables: None,
        }
    }

    /// The per-head q and k RMSNorm weights, when the family has them.
    fn norms(&self) -> (Option<&Array>, Option<&Array>) {
        match self.qk_norm {
            Some((q, k, _)) => (Some(q), Some(k)),
            None => (None, None),
        }
    }

    /// t [.., n*head_dim] → [b, n, l, head_dim] for `[b, l]` (tokens as batch entries `b` or as
    /// positions `l`), RMS-normed per head with `norm` first.
    fn heads_of(&self, t: &Array, [b, l]: [i32; 2], n: i32, norm: Option<&Array>) -> MlxResult<Array> {
        // One position per entry (decode): [b, n, 1, d] is the same memory order as [b, 1, n, d],
        // so one reshape replaces reshape + transpose (a decode step is bound by its node count).
        let shape = if l == 1 { [b, n, 1, self.head_dim] } else { [b, l, n, self.head_dim] };
        let t = t.reshape(&shape)?;
        let t = match (norm, self.qk_norm) {
            (Some(w), Some((_, _, eps))) => fast::rms_norm(&t, Some(w), eps)?,
            _ => t,
        };
        if l == 1 { Ok(t) } else { t.transpose_axes(&[0, 2, 1, 3]) }
    }
}

/// q/k/v: projected [1, T, heads*head_dim] / [1, T, kv_heads*head_dim] over all segments'
/// tokens → attention output [1, T, heads*head_dim] (before the output projection).
pub(crate) fn segment_attention(spec: &AttnSpec<'_>, layer: usize, q_all: &Array, k_all: &Array, v_all: &Array, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
    let single = segs.len() == 1;
    let mut outs = Vec::with_capacity(segs.len());
    let mut start = 0i32;
    for seg in segs.iter_mut() {
        let len = seg.tokens.len() as i32;
        let part = |t: &Array| -> MlxResult<Array> {
            if single { Ok(t.clone()) } else { t.try_index((.., start..start + len, ..)) }
        };
        if let Some(batch) = seg.batch.as_deref_mut() {
            outs.push(stacked_decode(spec, layer, &part(q_all)?, &part(k_all)?, &part(v_all)?, batch)?);
            start += len;
            continue;
        }
        let (qn, kn) = spec.norms();
        let q = spec.heads_of(&part(q_all)?, [1, len], spec.heads, qn)?;
        let k = spec.heads_of(&part(k_all)?, [1, len], spec.kv_heads, kn)?;
        let v = spec.heads_of(&part(v_all)?, [1, len], spec.kv_heads, None)?;
        let cache = &mut seg.cache[layer];
        let offset = cache.offset();
        let (q, k) = match spec.tables {
            Some(t) => (t.apply(&q)?, t.apply(&k)?),
            None => (spec.rope.apply(&q, offset)?, spec.rope.apply(&k, offset)?),
        };
        let (keys, values) = cache.update(&k, &v)?;
        let out = if len > 1 {
            super::sdpa::causal(&q, &keys, &values, spec.scale)?
        } else {
            fast::scaled_dot_product_attention(&q, &keys, &values, spec.scale, None, None)?
        };
        let out = if len == 1 { out } else { out.transpose_axes(&[0, 2, 1, 3])? };
        outs.push(out.reshape(&[1, len, spec.heads * spec.head_dim])?);
        start += len;
    }
    if single { Ok(outs.pop().unwrap()) } else { ops::concatenate(&outs, 1) }
}

/// The stacked decode rows: q/k/v [1, rows, n*head_dim], one token per row → [1, rows,
/// heads*head_dim]. Each row attends to its own slot of `batch` (its history plus this token).
fn stacked_decode(spec: &AttnSpec<'_>, layer: usize, q: &Array, k: &Array, v: &Array, batch: &mut BatchKv) -> MlxResult<Array> {
    let rows = q.shape()[1];
    // [1, rows, n*d] → [rows, n, 1, d]: each row is a batch entry with one query position.
    let (qn, kn) = spec.norms();
    let q = spec.rope.apply_at(&spec.heads_of(q, [rows, 1], spec.heads, qn)?, batch.positions())?;
    let k = spec.rope.apply_at(&spec.heads_of(k, [rows, 1], spec.kv_heads, kn)?, batch.positions())?;
    let v = spec.heads_of(v, [rows, 1], spec.kv_heads, None)?;
    // [rows, heads, 1, d] holds each row's heads in order: no transpose needed.
    stacked_attend(spec, layer, &q, &k, &v, batch)?.reshape(&[1, rows, spec.heads * spec.head_dim])
}

/// The stacked rows' attention from their rotated heads (q [rows, heads, 1, d], k/v [rows,
/// kv_heads, 1, d]): this token's keys/values written to each row's slot, each row attending to
/// its own history → [rows, heads, 1, d].
fn stacked_attend(spec: &AttnSpec<'_>, layer: usize, q: &Array, k: &Array, v: &Array, batch: &mut BatchKv) -> MlxResult<Array> {
    let (keys, values, mask) = batch.update(layer, k, v)?;
    if let Some(m) = &mask {
        // rows of unequal lengths: one kernel where it runs (MLX's masked attention is unfused)
        if let Some(out) = super::range_attention::stacked(q, &keys, &values, batch.positions(), m, spec.scale)? {
            return Ok(out);
        }
    }
    let mask = mask.as_ref().map(fast::ScaledDotProductAttentionMask::Array);
    fast::scaled_dot_product_attention(q, &keys, &values, spec.scale, mask, None)
}

/// A fused pass's attention (rows in segment order: one per stacked row or decoding sequence,
/// or the tokens of one short chunk) from heads already split, normed and rotated by
/// `fused_decode::decode_heads`: q [T, heads, 1, d], k/v [T, kv_heads, 1, d] → [1, T,
/// heads·d]. Each segment's keys/values go to its own cache or batch slot.
pub(crate) fn decode_attention(spec: &AttnSpec<'_>, layer: usize, q: &Array, k: &Array, v: &Array, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
    let single = segs.len() == 1;
    let mut outs = Vec::with_capacity(segs.len());
    let mut start = 0i32;
    for seg in segs.iter_mut() {
        let n = seg.tokens.len() as i32;
        let rows = |t: &Array| -> MlxResult<Array> {
            if single { Ok(t.clone()) } else { t.try_index(start..start + n) }
        };
        let (q, k, v) = (rows(q)?, rows(k)?, rows(v)?);
        let out = match seg.batch.as_deref_mut() {
            Some(batch) => stacked_attend(spec, layer, &q, &k, &v, batch)?,
            None if n > 1 => {
                // One sequence's n new tokens (a verification pass, a short prompt chunk): its
                // rows become the query positions of one batch entry, attending causally.
                let positions = |t: &Array, heads: i32| t.reshape(&[1, n, heads, spec.head_dim])?.transpose_axes(&[0, 2, 1, 3]);
                let (keys, values) = seg.cache[layer].update(&positions(&k, spec.kv_heads)?, &positions(&v, spec.kv_heads)?)?;
                match super::range_attention::chunk(&q, &keys, &values, spec.scale)? {
                    Some(rows) => rows, // [n, heads, 1, d]: reshaped below as the other rows
                    None => super::sdpa::causal(&positions(&q, spec.heads)?, &keys, &values, spec.scale)?.transpose_axes(&[0, 2, 1, 3])?,
                }
            }
            None => {
                let (keys, values) = seg.cache[layer].update(&k, &v)?;
                match super::range_attention::single_row(&q, &keys, &values, spec.scale)? {
                    Some(row) => row,
                    None => fast::scaled_dot_product_attention(&q, &keys, &values, spec.scale, None, None)?,
                }
            }
        };
        outs.push(out.reshape(&[1, n, spec.heads * spec.head_dim])?);
        start += n;
    }
    if single { Ok(outs.pop().unwrap()) } else { ops::concatenate(&outs, 1) }
}

/// The rotary positions of a fused pass's rows (segment order): each stacked row's length,
/// each other segment's cache offset onwards, one per token → int32 [T]. Built once per pass
/// and shared by every layer.
pub(crate) fn decode_positions(segs: &[Segment<'_>]) -> Array {
    let mut pos = Vec::new();
    for seg in segs {
        match seg.batch.as_deref() {
            Some(batch) => pos.extend(batch.lengths()),
            None => {
                let offset = seg.cache.first().map_or(0, |c| c.offset());
                pos.extend(offset..offset + seg.tokens.len() as i32);
            }
        }
    }
    let n = pos.len() as i32;
    Array::from_slice(&pos, &[n])
}
