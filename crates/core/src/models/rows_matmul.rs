//! Products of a few rows with a weight matrix on MLX's CUDA backend (x [.., K] · wᵀ, w [N, K]
//! dense bf16/f16, 2 to 16 rows): stacked decode steps (one row per stream) and speculative
//! verification passes (k + 1 rows).
//!
//! MLX runs one row through its GEMV kernel, which streams the weights near the memory
//! bandwidth, and anything more through cuBLAS, whose tiles at 5–16 rows read the weights of a
//! 1B model's projections at 0.4–1.9 TB/s — 2–3× slower than one row (bench/RESULTS-gpu.md).
//! A GEMV-style kernel that keeps all rows in every warp is compute-bound past two rows on CUDA
//! cores (measured: 2–5× slower than cuBLAS at 16 rows), so this one feeds the tensor cores:
//! each warp owns 8·C output columns and a share of K, and for every 32 elements of K issues
//! `mma.m16n8k16` (bf16/f16 in, f32 accumulate) on the 16 rows (rows past the last are zeros)
//! against the weights it streams once with 16-byte loads. The 8 warps of a block split K and
//! add their partial sums in a fixed order at the end.
//!
//! A row's result depends only on that row (the padding rows are zeros and every output element
//! is its own dot product), so it is the same whatever the number of rows beside it: a stream's
//! logits do not change as streams join or leave a stacked batch. It is not bit-identical to
//! MLX's GEMV or cuBLAS (another summation order, f32 accumulation as theirs).
//! A one-time self-check compares with an f32 reference and checks that independence; any
//! failure turns the kernel off with a warning. `MLX_SERVING_ROWS_MATMUL=0` turns it off.

use std::cell::OnceCell;
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::cuda_kernel::{CudaKernel, Launch};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Most rows one launch carries: the 16 rows of one `mma.m16n8k16` tile.
pub const MAX_ROWS: i32 = 16;
/// Warps per block; they split K.
const WARPS: i32 = 8;
/// Elements of K per warp step (two m16n8k16 products).
const K_STEP: i32 = 32;

const HEADER: &str = r#"
// 8 consecutive elements (16 bytes) as four 32-bit registers, two elements each (the lower
// index in the lower half, as the mma fragments expect).
template <typename T>
__device__ inline uint4 rows_load8(const T* p) {
  if ((reinterpret_cast<size_t>(p) & 15) == 0) return *reinterpret_cast<const uint4*>(p);
  uint4 r;
  T* e = reinterpret_cast<T*>(&r);
#pragma unroll
  for (int j = 0; j < 8; ++j) e[j] = p[j];
  return r;
}

// d += a · b for one m16n8k16 tile: a = rows (A fragment, row-major), b = weights (B fragment,
// "col": one weight row per output column), f32 accumulators.
template <typename T>
__device__ inline void rows_mma(float* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1);

template <>
__device__ inline void rows_mma<__nv_bfloat16>(float* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <>
__device__ inline void rows_mma<__half>(float* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0, unsigned b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
"#;

/// Lane (g = lane / 4, t = lane % 4) loads 8 consecutive elements at k + 8t of row g and g + 8
/// of x and of weight row g of each column tile; the fragments take elements (0,1),(2,3) for
/// the first product and (4,5),(6,7) for the second. A and B use the same lane ↔ k mapping, so
/// every product pairs x[m, k'] with w[n, k'] for the same k' — the K axis is only permuted
/// inside each 32-element step, which a sum does not see.
const SOURCE: &str = r#"
  constexpr int WARPS = 8;
  const int lane = threadIdx.x & 31, warp_id = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int N = w_shape[0];
  const int K = w_shape[1];
  int M = 1;
  for (int i = 0; i < x_ndim - 1; ++i) M *= x_shape[i];
  const int n0 = blockIdx.x * 8 * C;
  float acc[C][4];
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[c][i] = 0.f;
  const bool has_a = g < M, has_b = g + 8 < M;
  const T* xa = x + (size_t)g * K;
  const T* xb = x + (size_t)(g + 8) * K;
  const T* wr[C];
#pragma unroll
  for (int c = 0; c < C; ++c) wr[c] = w + (size_t)min(n0 + c * 8 + g, N - 1) * K;
  const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll 2
  for (int kb = warp_id * 32; kb < K; kb += WARPS * 32) {
    const int k = kb + t * 8;
    uint4 wv[C];
#pragma unroll
    for (int c = 0; c < C; ++c) wv[c] = rows_load8(wr[c] + k);
    const uint4 va = has_a ? rows_load8(xa + k) : zero;
    const uint4 vb = has_b ? rows_load8(xb + k) : zero;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      rows_mma<T>(acc[c], va.x, vb.x, va.y, vb.y, wv[c].x, wv[c].y);
      rows_mma<T>(acc[c], va.z, vb.z, va.w, vb.w, wv[c].z, wv[c].w);
    }
  }
  __shared__ float part[WARPS][16][8 * C];
#pragma unroll
  for (int c = 0; c < C; ++c) {
    part[warp_id][g][c * 8 + t * 2] = acc[c][0];
    part[warp_id][g][c * 8 + t * 2 + 1] = acc[c][1];
    part[warp_id][g + 8][c * 8 + t * 2] = acc[c][2];
    part[warp_id][g + 8][c * 8 + t * 2 + 1] = acc[c][3];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 16 * 8 * C; i += blockDim.x) {
    const int row = i / (8 * C), col = i % (8 * C);
    if (row < M && n0 + col < N) {
      float s = 0.f;
#pragma unroll
      for (int v = 0; v < WARPS; ++v) s += part[v][row][col];
      y[(size_t)row * N + n0 + col] = static_cast<T>(s);
    }
  }
"#;

thread_local! {
    static KERNEL: OnceCell<CudaKernel> = const { OnceCell::new() };
}

/// Whether products of 2..=16 rows go through the kernel: MLX's CUDA backend, the fused CUDA
/// kernels on, this one not switched off, and its one-time self-check passed.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let switched_on = !std::env::var("MLX_SERVING_ROWS_MATMUL").is_ok_and(|v| v == "0");
        super::fused_decode::kernel_gate("few-row tensor-core matmul", switched_on, self_check)
    })
}

/// Output tiles (8 columns each) per warp. Two measured best or within noise of the best on an
/// H200 for the projections of 1B–4B models at 2–16 rows (bench/RESULTS-gpu.md,
/// `examples/rows_matmul_bench.rs`).
pub const TILES_PER_WARP: i32 = 2;

/// Widest weight (output rows) the kernel takes: vocabulary-sized output heads stream at
/// 3.7–4 TB/s in cuBLAS already at 2–16 rows, where this kernel was 5–15 % slower.
pub const MAX_OUTPUTS: i32 = 32768;

/// Whether a product of `rows` rows with a [n, k] weight of `dtype` is one this kernel takes
/// (before the machine-level `enabled()` check).
pub fn applies(rows: i32, n: i32, k: i32, dtype: Dtype) -> bool {
    (2..=MAX_ROWS).contains(&rows) && n <= MAX_OUTPUTS && k % K_STEP == 0 && matches!(dtype, Dtype::Bfloat16 | Dtype::Float16)
}

/// x [.., K] · wᵀ for w [N, K] when the kernel applies (CUDA, kernel on, bf16/f16 x and w of one
/// dtype, K a multiple of 32, N ≤ 32768, 2..=16 rows); `None` otherwise (the caller runs MLX's
/// matmul).
pub fn matmul(x: &Array, w: &Array) -> MlxResult<Option<Array>> {
    let (xs, ws) = (x.shape(), w.shape());
    let Some(&k) = xs.last() else { return Ok(None) };
    let rows = if k > 0 { x.size() as i32 / k } else { 0 };
    if ws.len() != 2 || ws[1] != k || x.dtype() != w.dtype() || !applies(rows, ws[0], k, x.dtype()) || !enabled() {
        return Ok(None);
    }
    launch(x, w, TILES_PER_WARP).map(Some)
}

/// The launch itself, with `c` column tiles per warp (examples time the choices). Callers
/// guarantee 1..=16 rows, K a multiple of 32 and bf16/f16.
pub fn launch(x: &Array, w: &Array, c: i32) -> MlxResult<Array> {
    let n = w.shape()[0];
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("x has a last axis") = n;
    let per_block = 8 * c;
    let blocks = (n + per_block - 1) / per_block;
    let out = KERNEL.with(|kernel| {
        let kernel = kernel.get_or_init(|| CudaKernel::new("rows_matmul", &["x", "w"], &["y"], SOURCE, HEADER));
        kernel.apply(
            &[x, w],
            &Launch {
                outputs: &[(&shape, x.dtype())],
                grid: (blocks * WARPS * 32, 1, 1),
                block: (WARPS * 32, 1, 1),
                dtypes: &[(c"T", x.dtype())],
                ints: &[(c"C", c)],
                bools: &[],
            },
        )
    })?;
    Ok(out.into_iter().next().expect("one output"))
}

/// Against an f32 product (bf16 rounding of a sum of a few hundred terms: well under 1%), for
/// each tile count and a partial last tile; and the first rows of a 16-row product equal the
/// same rows computed as a 3-row product (a row does not depend on the others).
fn self_check() -> MlxResult<bool> {
    use mlx_rs::ops::{self, indexing::TryIndexOp};
    use super::fused_decode::{relative_error, seeded_normal};
    let (x, w) = (seeded_normal(&[1, 16, 256], 1, Dtype::Bfloat16)?, seeded_normal(&[44, 256], 2, Dtype::Bfloat16)?);
    let want = ops::matmul(&x.as_dtype(Dtype::Float32)?, &w.as_dtype(Dtype::Float32)?.transpose()?)?;
    for c in [1, 2, 4] {
        if relative_error(&launch(&x, &w, c)?, &want)? > 1e-2 {
            return Ok(false);
        }
    }
    let first = x.try_index((.., ..3, ..))?;
    let alone = launch(&first, &w, 1)?;
    let within = launch(&x, &w, 1)?.try_index((.., ..3, ..))?;
    super::fused_decode::all_equal(&[(alone, within)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which products the kernel takes: the few-row projections of decode and verification,
    /// not single rows (MLX's GEMV), prompts, vocabulary heads, f32 or K off the 32-element step.
    #[test]
    fn takes_few_row_projections_only() {
        assert!(applies(2, 3072, 2048, Dtype::Bfloat16));
        assert!(applies(16, 19456, 2560, Dtype::Float16));
        assert!(!applies(1, 3072, 2048, Dtype::Bfloat16), "one row stays on MLX's GEMV");
        assert!(!applies(17, 3072, 2048, Dtype::Bfloat16), "one mma tile holds 16 rows");
        assert!(!applies(5, 128256, 2048, Dtype::Bfloat16), "vocabulary heads stay on cuBLAS");
        assert!(!applies(5, 3072, 2050, Dtype::Bfloat16), "K must be a multiple of 32");
        assert!(!applies(5, 3072, 2048, Dtype::Float32), "no f32 tensor-core path");
    }

    /// Off the CUDA backend (the tests' CPU) the engine's products never take the kernel.
    #[test]
    fn cpu_products_use_mlx() {
        let x = Array::zeros::<f32>(&[1, 4, 64]).unwrap().as_dtype(Dtype::Bfloat16).unwrap();
        let w = Array::zeros::<f32>(&[32, 64]).unwrap().as_dtype(Dtype::Bfloat16).unwrap();
        assert!(matmul(&x, &w).unwrap().is_none());
    }
}
