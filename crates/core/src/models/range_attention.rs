//! Attention of a few query rows over KV caches, each row over one contiguous range of keys,
//! as ONE kernel on MLX's CUDA backend — for the two cases MLX runs as many operations:
//! - a sequence's short chunk (2–16 new tokens: a speculative verification pass, a short prompt
//!   chunk), causal: row i sees keys 0 ..= N − L + i. Otherwise `sdpa::explicit_causal` — scale,
//!   score matmul, cast, mask, softmax, cast, value matmul and layout copies: about ten operations
//!   per layer, each encoded by the host (the cost that bounds decode on a GPU, docs/adr/
//!   cuda-fused-decode.md), with cuBLAS products whose shapes change with every new key;
//! - stacked decode rows of unequal lengths (`generation/batch_kv.rs`), row r over the columns it
//!   holds. Otherwise MLX's attention with a boolean mask, which its CUDA backend runs unfused.
//!
//! One block per (query row, kv head) streams the row's visible keys once for the kv head's
//! whole query group: each warp reads several keys at a time (head_dim 64: 4 keys, 8 lanes of 8
//! contiguous features per key), keeps a running max, sum and weighted value sum per head and
//! key slot (online softmax, f32), merges its slots with shuffles, and the block merges its
//! warps' partial results at the end. (A first version gave each key a whole warp and 4 warps a
//! block: latency-bound, ~150 µs a layer for one row over 1100 keys on an H100.) Keys and values are read where the cache holds them (strided views, no copy); q comes in
//! the row layout [rows, heads, 1, d] (`fused_decode::decode_heads`, rope) and the output leaves
//! in it.
//!
//! On by default on MLX's CUDA backend (`MLX_SERVING_ATTENTION_KERNEL=0` switches it off), after
//! a one-time self-check of both variants against MLX's attention. Measured on an H100 (bench/
//! RESULTS-gpu.md, 2026-12-07): 7 rows over 1100 keys 19 µs vs 192 µs for MLX's operations, 16
//! stacked rows 30.5 vs 99.1 µs; a speculative round's verification wait 2.6 vs 4.4 ms. Single
//! decode rows keep MLX's one-query kernel unless `MLX_SERVING_ROW_ATTENTION_KERNEL=1`.

use std::cell::OnceCell;
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::cuda_kernel::{CudaKernel, Launch};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Longest chunk (queries per sequence) the kernel takes, as `sdpa::SMALL_QUERY_BLOCK`.
pub const MAX_ROWS: i32 = super::sdpa::SMALL_QUERY_BLOCK;
/// Warps per block: 8 (4 for head_dim 256, to keep the merge buffer within 48 KB of shared memory).
fn warps(head_dim: i32) -> i32 {
    if head_dim <= 128 { 8 } else { 4 }
}

/// The kernel body; `stacked` picks how a row finds its batch entry and key range.
fn source(stacked: bool) -> String {
    let range = if stacked {
        // row r is batch entry r and holds its last pos[r] + 1 columns
        "const int b = row; const int hi = N; const int lo = N - 1 - pos[row];"
    } else {
        // the chunk's L rows share batch entry 0; row i sees keys 0 ..= N - L + i
        "const int b = 0; const int lo = 0; const int hi = N - L + row + 1;"
    };
    format!(
        r#"
  // KPW keys per warp at a time, LPK lanes per key, EPL contiguous features per lane
  constexpr int G = H / HKV;
  constexpr int KPW = (D == 32 || D == 64 || D == 128 || D == 256) ? 256 / D : 1;
  constexpr int LPK = 32 / KPW;
  constexpr int EPL = D / LPK;
  const int L = q_shape[0];
  const int N = keys_shape[2];
  const int row = blockIdx.x / HKV, hk = blockIdx.x % HKV;
  {range}
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int slot = lane / LPK, sub = lane % LPK;
  const float scale = __int_as_float(SCALE_BITS);
  const float NEG_INF = -__int_as_float(0x7f800000);
  float qv[G][EPL], acc[G][EPL], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {{
    m[g] = NEG_INF;
    l[g] = 0.f;
#pragma unroll
    for (int t = 0; t < EPL; ++t) {{
      qv[g][t] = static_cast<float>(q[((size_t)row * H + hk * G + g) * D + sub * EPL + t]) * scale;
      acc[g][t] = 0.f;
    }}
  }}
  const T* kbase = keys + (size_t)b * keys_strides[0] + (size_t)hk * keys_strides[1] + sub * EPL;
  const T* vbase = values + (size_t)b * values_strides[0] + (size_t)hk * values_strides[1] + sub * EPL;
  // every lane runs the same number of iterations (the shuffles need the whole warp); a lane
  // whose key is out of range computes with a score of -inf, which changes nothing
  for (int j0 = lo + (w * KPW); j0 < hi; j0 += WARPS * KPW) {{
    const int j = j0 + slot;
    const bool live = j < hi;
    float kd[EPL], vd[EPL];
#pragma unroll
    for (int t = 0; t < EPL; ++t) {{
      kd[t] = live ? static_cast<float>(kbase[(size_t)j * keys_strides[2] + t]) : 0.f;
      vd[t] = live ? static_cast<float>(vbase[(size_t)j * values_strides[2] + t]) : 0.f;
    }}
#pragma unroll
    for (int g = 0; g < G; ++g) {{
      float s = 0.f;
#pragma unroll
      for (int t = 0; t < EPL; ++t) s += qv[g][t] * kd[t];
#pragma unroll
      for (int o = LPK / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
      if (live) {{
        const float m_new = fmaxf(m[g], s);
        const float corr = __expf(m[g] - m_new);
        const float p = __expf(s - m_new);
        l[g] = l[g] * corr + p;
#pragma unroll
        for (int t = 0; t < EPL; ++t) acc[g][t] = acc[g][t] * corr + p * vd[t];
        m[g] = m_new;
      }}
    }}
  }}
  // merge the warp's key slots (lanes with the same sub) into slot 0
#pragma unroll
  for (int o = LPK; o < 32; o <<= 1) {{
#pragma unroll
    for (int g = 0; g < G; ++g) {{
      const float om = __shfl_xor_sync(0xffffffff, m[g], o);
      const float ol = __shfl_xor_sync(0xffffffff, l[g], o);
      const float mm = fmaxf(m[g], om);
      const float f1 = m[g] == NEG_INF ? 0.f : __expf(m[g] - mm);
      const float f2 = om == NEG_INF ? 0.f : __expf(om - mm);
      l[g] = l[g] * f1 + ol * f2;
#pragma unroll
      for (int t = 0; t < EPL; ++t) {{
        const float oa = __shfl_xor_sync(0xffffffff, acc[g][t], o);
        acc[g][t] = acc[g][t] * f1 + oa * f2;
      }}
      m[g] = mm;
    }}
  }}
  __shared__ float sm_m[WARPS][G], sm_l[WARPS][G];
  __shared__ float sm_acc[WARPS][G][D];
  if (slot == 0) {{
#pragma unroll
    for (int g = 0; g < G; ++g) {{
      if (sub == 0) {{ sm_m[w][g] = m[g]; sm_l[w][g] = l[g]; }}
#pragma unroll
      for (int t = 0; t < EPL; ++t) sm_acc[w][g][sub * EPL + t] = acc[g][t];
    }}
  }}
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {{
    const int g = i / D, d = i % D;
    float mm = NEG_INF;
#pragma unroll
    for (int v = 0; v < WARPS; ++v) mm = fmaxf(mm, sm_m[v][g]);
    float num = 0.f, den = 0.f;
#pragma unroll
    for (int v = 0; v < WARPS; ++v) {{
      const float f = sm_m[v][g] == NEG_INF ? 0.f : __expf(sm_m[v][g] - mm);
      num += sm_acc[v][g][d] * f;
      den += sm_l[v][g] * f;
    }}
    out[((size_t)row * H + hk * G + g) * D + d] = static_cast<T>(num / den);
  }}
"#
    )
}

thread_local! {
    /// The chunk variant, then the stacked one.
    static KERNELS: [OnceCell<CudaKernel>; 2] = const { [OnceCell::new(), OnceCell::new()] };
}

/// Whether the kernel runs: CUDA, the fused kernels on, not switched off with
/// `MLX_SERVING_ATTENTION_KERNEL=0`, and the one-time self-check passed.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let switched_on = std::env::var("MLX_SERVING_ATTENTION_KERNEL").map_or(true, |v| v != "0");
        super::fused_decode::kernel_gate("range attention kernel", switched_on, self_check)
    })
}

/// Whether the kernel takes these heads and rows: a lane per 32 features, a query group of at
/// most 8, at most 16 rows.
pub fn supported(rows: i32, heads: i32, kv_heads: i32, head_dim: i32, dtype: Dtype) -> bool {
    (1..=MAX_ROWS).contains(&rows)
        && kv_heads > 0
        && heads % kv_heads == 0
        && heads / kv_heads <= 8
        && head_dim % 32 == 0
        && head_dim <= 256
        && matches!(dtype, Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32)
}

/// Head sizes whose kernel has run against MLX's attention on a GPU (`cuda_kernels_check`); the
/// others `supported` takes compiled in review but keep MLX's path until checked there.
const GPU_CHECKED_HEAD_DIMS: [i32; 2] = [64, 128];

/// Where a caller's attention runs when not on its own path.
enum Route {
    Kernel,
    /// The reference operations (under `fused_decode::set_reference_ops`, so tests on any
    /// backend cover the callers' layouts).
    Reference,
}

/// The route for these heads, `None` where the caller keeps its own path (also where keys or
/// values differ from q in dtype or head size: the kernel reads all three as `T` [.., d]).
fn route(q: &Array, keys: &Array, values: &Array) -> Option<Route> {
    let s = q.shape();
    let same_layout = [keys, values].iter().all(|a| a.dtype() == q.dtype() && a.shape().get(3) == Some(&s[3]));
    if !same_layout || !supported(s[0], s[1], keys.shape()[1], s[3], q.dtype()) {
        None
    } else if super::fused_decode::reference_ops() {
        Some(Route::Reference)
    } else if enabled() && GPU_CHECKED_HEAD_DIMS.contains(&s[3]) {
        Some(Route::Kernel)
    } else {
        None
    }
}

/// A chunk's causal attention (q: its rows [L, heads, 1, d], rotated, row-contiguous; keys/values:
/// the sequence's cache after the chunk was written, [1, kv_heads, N, d] views with a contiguous
/// last axis) → [L, heads, 1, d]; `None` where the caller keeps its own path.
pub fn chunk(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Option<Array>> {
    match route(q, keys, values) {
        Some(Route::Kernel) => launch(q, keys, values, None, scale).map(Some),
        Some(Route::Reference) => chunk_reference(q, keys, values, scale).map(Some),
        None => Ok(None),
    }
}

/// One sequence's single decode row (q [1, heads, 1, d]; keys/values its cache views): the
/// kernel only when `MLX_SERVING_ROW_ATTENTION_KERNEL=1` as well (an A/B against MLX's own
/// one-query attention, cuDNN or its vector kernel, which is one operation already — what is
/// weighed is their host and device cost); `None` keeps MLX's.
pub fn single_row(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Option<Array>> {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("MLX_SERVING_ROW_ATTENTION_KERNEL").is_ok_and(|v| v == "1"));
    match route(q, keys, values) {
        Some(Route::Kernel) if on => launch(q, keys, values, None, scale).map(Some),
        _ => Ok(None),
    }
}

/// Stacked decode rows' attention (q [rows, heads, 1, d]; keys/values [rows, kv_heads, N, d]
/// as `BatchKv::update` returns them; positions int32 [rows]: row r holds its last
/// positions[r] + 1 columns; mask: the same as booleans [rows, 1, 1, N]) → [rows, heads, 1, d];
/// `None` where the caller keeps its own path.
pub fn stacked(q: &Array, keys: &Array, values: &Array, positions: &Array, mask: &Array, scale: f32) -> MlxResult<Option<Array>> {
    match route(q, keys, values) {
        Some(Route::Kernel) => launch(q, keys, values, Some(positions), scale).map(Some),
        Some(Route::Reference) => stacked_reference(q, keys, values, mask, scale).map(Some),
        None => Ok(None),
    }
}

/// The kernel: the chunk variant without `positions`, the stacked one with them.
pub fn launch(q: &Array, keys: &Array, values: &Array, positions: Option<&Array>, scale: f32) -> MlxResult<Array> {
    let (rows, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[3]);
    let kv_heads = keys.shape()[1];
    let mut inputs = vec![q, keys, values];
    inputs.extend(positions);
    let stacked = positions.is_some();
    let out = KERNELS.with(|kernels| {
        let kernel = kernels[usize::from(stacked)].get_or_init(|| {
            let names: &[&str] = if stacked { &["q", "keys", "values", "pos"] } else { &["q", "keys", "values"] };
            CudaKernel::with_layout("range_attention", names, &["out"], &source(stacked), "", false)
        });
        kernel.apply(
            &inputs,
            &Launch {
                outputs: &[(&[rows, heads, 1, d], q.dtype())],
                grid: (rows * kv_heads * warps(d) * 32, 1, 1),
                block: (warps(d) * 32, 1, 1),
                dtypes: &[(c"T", q.dtype())],
                ints: &[(c"H", heads), (c"HKV", kv_heads), (c"D", d), (c"WARPS", warps(d)), (c"SCALE_BITS", scale.to_bits() as i32)],
                bools: &[],
            },
        )
    })?;
    Ok(out.into_iter().next().expect("one output"))
}

/// What the chunk variant computes, with MLX operations (`sdpa::causal` in the [1, heads, L, d]
/// layout).
pub fn chunk_reference(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Array> {
    let (rows, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[3]);
    let q = q.reshape(&[1, rows, heads, d])?.transpose_axes(&[0, 2, 1, 3])?;
    let out = super::sdpa::causal(&q, keys, values, scale)?;
    out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[rows, heads, 1, d])
}

/// What the stacked variant computes: MLX's attention with the rows' mask.
pub fn stacked_reference(q: &Array, keys: &Array, values: &Array, mask: &Array, scale: f32) -> MlxResult<Array> {
    mlx_rs::fast::scaled_dot_product_attention(q, keys, values, scale, mlx_rs::fast::ScaledDotProductAttentionMask::Array(mask), None)
}

/// Both variants against their references on views of a longer cache, GQA 8/2: 5 chunk rows
/// over 37 keys, 3 stacked rows holding 37, 20 and 1 of 37 columns; f32 within 2e-3, bf16
/// within 2e-2 of the largest output. (The chunk reference's products run on TF32 tensor cores
/// under MLX's CUDA default `MLX_ENABLE_TF32=1`: 4.6–7.9e-4 relative off the kernel at 5–16 rows
/// over 300–1100 keys on an H100, while the stacked variant, whose reference is MLX's fused
/// attention, agreed within 5e-7 — `cuda_kernels_check` compares with TF32 off. A wrong kernel
/// is off by O(1).)
fn self_check() -> MlxResult<bool> {
    use mlx_rs::ops::indexing::TryIndexOp;
    use super::fused_decode::{relative_error, seeded_normal};
    let (heads, kv_heads, d, n) = (8, 2, 64, 37);
    for (dtype, tol) in [(Dtype::Float32, 2e-3f32), (Dtype::Bfloat16, 2e-2)] {
        let q = seeded_normal(&[5, heads, 1, d], 1, dtype)?;
        let kbuf = seeded_normal(&[3, kv_heads, 64, d], 2, dtype)?;
        let vbuf = seeded_normal(&[3, kv_heads, 64, d], 3, dtype)?;
        let (keys, values) = (kbuf.try_index((..1, .., ..n, ..))?, vbuf.try_index((..1, .., ..n, ..))?);
        let got = launch(&q, &keys, &values, None, 0.125)?;
        if relative_error(&got, &chunk_reference(&q, &keys, &values, 0.125)?)? > tol {
            return Ok(false);
        }
        let (q3, keys, values) = (q.try_index(..3)?, kbuf.try_index((.., .., ..n, ..))?, vbuf.try_index((.., .., ..n, ..))?);
        let held = [37, 20, 1];
        let positions = Array::from_slice(&held.map(|h| h - 1), &[3]);
        let allowed: Vec<bool> = held.iter().flat_map(|&h| (0..n).map(move |j| j >= n - h)).collect();
        let mask = Array::from_slice(&allowed, &[3, 1, 1, n]);
        let got = launch(&q3, &keys, &values, Some(&positions), 0.125)?;
        if relative_error(&got, &stacked_reference(&q3, &keys, &values, &mask, 0.125)?)? > tol {
            return Ok(false);
        }
    }
    Ok(true)
}
