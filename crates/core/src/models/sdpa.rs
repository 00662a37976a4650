//! Causal attention for a pass of several new tokens (prefill chunks, speculative verification).
//!
//! MLX's CUDA backend runs `scaled_dot_product_attention` with more than one query through a
//! cuDNN graph that it builds for every distinct (queries, keys) shape — about 20 ms per build on
//! an H200 — and caches in a small LRU. A speculative verification pass has k + 1 queries and one
//! more key length every round, so every round paid a graph build (our GPU speculative decode
//! ran at 0.47× plain). For short query blocks on CUDA we therefore compute attention with plain
//! matmuls (no per-shape build); long blocks (prompt prefill), other backends and single-token
//! decode keep MLX's fused kernel — except long passes on the CPU backend, which run in
//! `services::cpu_attention` (MLX's CPU softmax is bound by a scalar exp).

use std::sync::OnceLock;

use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::{ops, Array};

use crate::services::cpu_attention;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Query blocks up to this length use the explicit form on CUDA.
pub(crate) const SMALL_QUERY_BLOCK: i32 = 16;

fn on_cuda() -> bool {
    static CUDA: OnceLock<bool> = OnceLock::new();
    *CUDA.get_or_init(|| crate::services::runtime_info::device() == "cuda")
}

/// Causal attention of q [1, H, L, D] (the last L positions) over k, v [1, Hkv, N, D] (N ≥ L,
/// H a multiple of Hkv) → [1, H, L, D].
pub(crate) fn causal(q: &Array, k: &Array, v: &Array, scale: f32) -> MlxResult<Array> {
    let l = q.shape()[2];
    if on_cuda() && l > 1 && l <= SMALL_QUERY_BLOCK {
        explicit_causal(q, k, v, scale)
    } else if cpu_attention::applies(q, k) {
        cpu_attention::attention(q, k, v, scale, true)
    } else {
        fast::scaled_dot_product_attention(q, k, v, scale, ScaledDotProductAttentionMask::Causal, None)
    }
}

/// Unmasked attention (vision towers): q [1, H, L, D] over k, v [1, Hkv, N, D] → [1, H, L, D];
/// long passes on the CPU backend run in `services::cpu_attention`.
pub(crate) fn full(q: &Array, k: &Array, v: &Array, scale: f32) -> MlxResult<Array> {
    if cpu_attention::applies(q, k) {
        cpu_attention::attention(q, k, v, scale, false)
    } else {
        fast::scaled_dot_product_attention(q, k, v, scale, None, None)
    }
}

/// What every layer of one pass shares in `explicit_causal`: the causal mask for (queries, keys)
/// and the scale in the activations' dtype. Built by the first layer and reused by the others
/// (a verification pass would otherwise build the same mask — a handful of kernels — per layer).
struct PassConstants {
    key: (i32, i32, mlx_rs::Dtype, u32),
    allowed: Array,
    scale: Array,
}

thread_local! {
    static PASS: std::cell::RefCell<Option<PassConstants>> = const { std::cell::RefCell::new(None) };
}

/// (allowed [l, n], scale) for `l` queries over `n` keys, the same arrays for every layer of a pass.
fn pass_constants(l: i32, n: i32, dtype: mlx_rs::Dtype, scale: f32) -> MlxResult<(Array, Array)> {
    let key = (l, n, dtype, scale.to_bits());
    PASS.with(|p| {
        let mut p = p.borrow_mut();
        if let Some(c) = p.as_ref().filter(|c| c.key == key) {
            return Ok((c.allowed.clone(), c.scale.clone()));
        }
        // Query i sits at position n - l + i and sees keys 0..=n - l + i.
        let allowed = crate::generation::kv_cache::causal_mask(l, n - l, None)?;
        let scale = Array::from_f32(scale).as_dtype(dtype)?;
        *p = Some(PassConstants { key, allowed: allowed.clone(), scale: scale.clone() });
        Ok((allowed, scale))
    })
}

/// softmax(q·kᵀ·scale + causal mask)·v with grouped-query heads broadcast, not repeated.
pub(crate) fn explicit_causal(q: &Array, k: &Array, v: &Array, scale: f32) -> MlxResult<Array> {
    let (h, l, d) = (q.shape()[1], q.shape()[2], q.shape()[3]);
    let (hkv, n) = (k.shape()[1], k.shape()[2]);
    let g = h / hkv;
    let (allowed, scale) = pass_constants(l, n, q.dtype(), scale)?;
    let q = ops::multiply(&q.reshape(&[1, hkv, g, l, d])?, &scale)?;
    // k and v are usually views of a longer cache buffer: a unit axis added as a view (not a
    // reshape, which would copy them first as its own operation per layer)
    let kt = k.expand_dims(2)?.transpose_axes(&[0, 1, 2, 4, 3])?;
    let scores = ops::matmul(&q, &kt)?.as_dtype(mlx_rs::Dtype::Float32)?; // [1, hkv, g, l, n]
    let scores = ops::select(&allowed, &scores, &Array::from_f32(f32::NEG_INFINITY))?;
    let probs = ops::softmax_axes(&scores, &[-1], true)?.as_dtype(v.dtype())?;
    let out = ops::matmul(&probs, &v.expand_dims(2)?)?; // [1, hkv, g, l, d]
    out.reshape(&[1, h, l, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::indexing::TryIndexOp;

    /// The explicit form equals MLX's fused causal attention (GQA, keys longer than queries).
    #[test]
    fn explicit_causal_matches_fused_sdpa() {
        let (h, hkv, l, n, d) = (8, 2, 5, 37, 16);
        let q = mlx_rs::random::normal::<f32>(&[1, h, l, d], None, None, Some(&mlx_rs::random::key(1).unwrap())).unwrap();
        let k = mlx_rs::random::normal::<f32>(&[1, hkv, n, d], None, None, Some(&mlx_rs::random::key(2).unwrap())).unwrap();
        let v = mlx_rs::random::normal::<f32>(&[1, hkv, n, d], None, None, Some(&mlx_rs::random::key(3).unwrap())).unwrap();
        let fused = fast::scaled_dot_product_attention(&q, &k, &v, 0.25, ScaledDotProductAttentionMask::Causal, None).unwrap();
        let ours = explicit_causal(&q, &k, &v, 0.25).unwrap();
        let diff = ops::max(&ops::abs(&ops::subtract(&fused, &ours).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
        assert!(diff < 1e-5, "max |Δ| = {diff}");
        // The mask matters here: attention without it differs by far more than the tolerance.
        let unmasked = fast::scaled_dot_product_attention(&q, &k, &v, 0.25, None, None).unwrap();
        let diff = ops::max(&ops::abs(&ops::subtract(&unmasked, &ours).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
        assert!(diff > 1e-2, "mask had no effect: {diff}");
        // the next layer of the same pass reuses the mask; a pass of another shape gets its own
        let again = explicit_causal(&q, &k, &v, 0.25).unwrap();
        let diff = ops::max(&ops::abs(&ops::subtract(&again, &ours).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
        assert_eq!(diff, 0.0);
        let (q3, k3, v3) = (q.try_index((.., .., ..3, ..)).unwrap(), k.try_index((.., .., ..20, ..)).unwrap(), v.try_index((.., .., ..20, ..)).unwrap());
        let fused = fast::scaled_dot_product_attention(&q3, &k3, &v3, 0.25, ScaledDotProductAttentionMask::Causal, None).unwrap();
        let ours = explicit_causal(&q3, &k3, &v3, 0.25).unwrap();
        let diff = ops::max(&ops::abs(&ops::subtract(&fused, &ours).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
        assert!(diff < 1e-5, "after a pass of another shape: max |Δ| = {diff}");
    }
}
