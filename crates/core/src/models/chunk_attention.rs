//! Causal attention of one sequence's short chunk (2–16 new tokens: a speculative verification
//! pass, a short prompt chunk) over its KV cache as ONE kernel on MLX's CUDA backend.
//!
//! Without it such a pass runs `sdpa::explicit_causal` — scale, score matmul, cast, mask,
//! softmax, cast, value matmul, plus the layout copies around them: about ten operations per
//! layer, each encoded by the host (the cost that bounds decode on a GPU, docs/adr/
//! cuda-fused-decode.md), and cuBLAS products whose shapes change with every new key. Here one
//! block per (query row, kv head) streams the visible keys once for the kv head's whole query
//! group: each warp takes every 4th key, keeps a running max, sum and weighted value sum per head
//! (online softmax, f32), and the block merges its warps' partial results at the end. The keys
//! and values are read where the cache holds them (strided views, no copy); q comes in the row
//! layout `fused_decode::decode_heads` writes ([rows, heads, 1, d]) and the output goes out in
//! the layout the output projection reads.
//!
//! Not yet measured on a GPU: off unless `MLX_SERVING_CHUNK_ATTENTION=1`, and then only after a
//! one-time self-check against `explicit_causal` (f32 and bf16, a cache view, GQA) passes.

use std::cell::OnceCell;
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::cuda_kernel::{CudaKernel, Launch};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Longest chunk (queries per sequence) the kernel takes, as `sdpa::SMALL_QUERY_BLOCK`.
pub const MAX_ROWS: i32 = super::sdpa::SMALL_QUERY_BLOCK;
const WARPS: i32 = 4;

const SOURCE: &str = r#"
  constexpr int WARPS = 4;
  constexpr int G = H / HKV;
  constexpr int DPL = D / 32;
  const int L = q_shape[0];
  const int N = keys_shape[2];
  const int row = blockIdx.x / HKV, hk = blockIdx.x % HKV;
  const int visible = N - L + row + 1;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const float scale = __int_as_float(SCALE_BITS);
  const float NEG_INF = -__int_as_float(0x7f800000);
  float qv[G][DPL], acc[G][DPL], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = NEG_INF;
    l[g] = 0.f;
#pragma unroll
    for (int t = 0; t < DPL; ++t) {
      qv[g][t] = static_cast<float>(q[((size_t)row * H + hk * G + g) * D + lane + 32 * t]) * scale;
      acc[g][t] = 0.f;
    }
  }
  const T* kbase = keys + (size_t)hk * keys_strides[1];
  const T* vbase = values + (size_t)hk * values_strides[1];
  for (int j = w; j < visible; j += WARPS) {
    const T* kj = kbase + (size_t)j * keys_strides[2];
    const T* vj = vbase + (size_t)j * values_strides[2];
    float kd[DPL], vd[DPL];
#pragma unroll
    for (int t = 0; t < DPL; ++t) {
      kd[t] = static_cast<float>(kj[lane + 32 * t]);
      vd[t] = static_cast<float>(vj[lane + 32 * t]);
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float s = 0.f;
#pragma unroll
      for (int t = 0; t < DPL; ++t) s += qv[g][t] * kd[t];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
      const float m_new = fmaxf(m[g], s);
      const float corr = __expf(m[g] - m_new);
      const float p = __expf(s - m_new);
      l[g] = l[g] * corr + p;
#pragma unroll
      for (int t = 0; t < DPL; ++t) acc[g][t] = acc[g][t] * corr + p * vd[t];
      m[g] = m_new;
    }
  }
  __shared__ float sm_m[WARPS][G], sm_l[WARPS][G];
  __shared__ float sm_acc[WARPS][G][D];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (lane == 0) { sm_m[w][g] = m[g]; sm_l[w][g] = l[g]; }
#pragma unroll
    for (int t = 0; t < DPL; ++t) sm_acc[w][g][lane + 32 * t] = acc[g][t];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i % D;
    float mm = NEG_INF;
#pragma unroll
    for (int v = 0; v < WARPS; ++v) mm = fmaxf(mm, sm_m[v][g]);
    float num = 0.f, den = 0.f;
#pragma unroll
    for (int v = 0; v < WARPS; ++v) {
      const float f = sm_m[v][g] == NEG_INF ? 0.f : __expf(sm_m[v][g] - mm);
      num += sm_acc[v][g][d] * f;
      den += sm_l[v][g] * f;
    }
    out[((size_t)row * H + hk * G + g) * D + d] = static_cast<T>(num / den);
  }
"#;

thread_local! {
    static KERNEL: OnceCell<CudaKernel> = const { OnceCell::new() };
}

/// Whether chunk passes use the kernel: CUDA, the fused kernels on, opted in with
/// `MLX_SERVING_CHUNK_ATTENTION=1`, and the one-time self-check passed.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let switched_on = std::env::var("MLX_SERVING_CHUNK_ATTENTION").is_ok_and(|v| v == "1");
        super::fused_decode::kernel_gate("chunk attention kernel", switched_on, self_check)
    })
}

/// Whether the kernel takes these heads: a lane per 32 features, a query group of at most 8.
pub fn supported(heads: i32, kv_heads: i32, head_dim: i32, dtype: Dtype) -> bool {
    kv_heads > 0 && heads % kv_heads == 0 && heads / kv_heads <= 8 && head_dim % 32 == 0 && head_dim <= 256 && matches!(dtype, Dtype::Bfloat16 | Dtype::Float16 | Dtype::Float32)
}

/// The chunk's attention through the kernel where it applies (or, under
/// `fused_decode::set_reference_ops`, through `reference`, so tests cover the callers' layouts);
/// `None` where the caller keeps its own path.
pub fn run(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Option<Array>> {
    let (rows, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[3]);
    if !(1..=MAX_ROWS).contains(&rows) || !supported(heads, keys.shape()[1], d, q.dtype()) {
        return Ok(None);
    }
    if super::fused_decode::reference_ops() {
        return reference(q, keys, values, scale).map(Some);
    }
    if !enabled() {
        return Ok(None);
    }
    attend(q, keys, values, scale).map(Some)
}

/// q: the chunk's rows [L, heads, 1, d] (rotated); keys/values: the sequence's cache after this
/// chunk was written, [1, kv_heads, N, d] (views; last axis contiguous). Row i sees keys
/// 0 ..= N − L + i. → [L, heads, 1, d].
pub fn attend(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Array> {
    let (rows, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[3]);
    let kv_heads = keys.shape()[1];
    let out = KERNEL.with(|kernel| {
        let kernel = kernel.get_or_init(|| CudaKernel::with_layout("chunk_attention", &["q", "keys", "values"], &["out"], SOURCE, "", false));
        kernel.apply(
            &[q, keys, values],
            &Launch {
                outputs: &[(&[rows, heads, 1, d], q.dtype())],
                grid: (rows * kv_heads * WARPS * 32, 1, 1),
                block: (WARPS * 32, 1, 1),
                dtypes: &[(c"T", q.dtype())],
                ints: &[(c"H", heads), (c"HKV", kv_heads), (c"D", d), (c"SCALE_BITS", scale.to_bits() as i32)],
                bools: &[],
            },
        )
    })?;
    Ok(out.into_iter().next().expect("one output"))
}

/// What `attend` computes, with MLX operations (`sdpa::causal` in the [1, heads, L, d] layout).
pub fn reference(q: &Array, keys: &Array, values: &Array, scale: f32) -> MlxResult<Array> {
    let (rows, heads, d) = (q.shape()[0], q.shape()[1], q.shape()[3]);
    let q = q.reshape(&[1, rows, heads, d])?.transpose_axes(&[0, 2, 1, 3])?;
    let out = super::sdpa::causal(&q, keys, values, scale)?;
    out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[rows, heads, 1, d])
}

/// The kernel against its reference on a view of a longer cache, GQA 8/2, 5 queries over 37
/// keys: f32 within 1e-4, bf16 within 2e-2 of the largest output.
fn self_check() -> MlxResult<bool> {
    use mlx_rs::ops::indexing::TryIndexOp;
    let normal = |shape: &[i32], seed: u64| mlx_rs::random::normal::<f32>(shape, None, None, Some(&mlx_rs::random::key(seed)?));
    let (heads, kv_heads, d, rows, n) = (8, 2, 64, 5, 37);
    for (dtype, tol) in [(Dtype::Float32, 1e-4f32), (Dtype::Bfloat16, 2e-2)] {
        let q = normal(&[rows, heads, 1, d], 1)?.as_dtype(dtype)?;
        let kbuf = normal(&[1, kv_heads, 64, d], 2)?.as_dtype(dtype)?;
        let vbuf = normal(&[1, kv_heads, 64, d], 3)?.as_dtype(dtype)?;
        let (keys, values) = (kbuf.try_index((.., .., ..n, ..))?, vbuf.try_index((.., .., ..n, ..))?);
        // (on CUDA `reference` runs explicit_causal for these 5 queries)
        let (got, want) = (attend(&q, &keys, &values, 0.125)?, reference(&q, &keys, &values, 0.125)?);
        if super::rows_matmul::relative_error(&got, &want)? > tol {
            return Ok(false);
        }
    }
    Ok(true)
}
