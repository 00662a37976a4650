//! Fused kernels for decode passes on MLX's CUDA backend (one token per sequence).
//!
//! A decode step on a GPU is bound by the host's cost per operation (MLX encodes each kernel
//! into a CUDA graph; docs/adr/cuda-fused-decode.md), so these kernels merge operations that
//! MLX runs one by one, with the SAME arithmetic in the same order as MLX's own kernels, so the
//! results are bit-identical (checked on the GPU by `examples/cuda_kernels_check.rs`):
//! - `add_rms_norm`: the residual add and the following RMSNorm (MLX's `add` + `rms_norm`),
//!   returning both the sum and the normalized rows — two kernels become one, twice a layer;
//! - `decode_heads`: from the fused q/k/v product, each head's query, key and value: split,
//!   per-head RMSNorm of q and k (qwen3) and rotary embedding at each row's position (MLX's
//!   `rms_norm` + `rope`) — up to six kernels (and, for several rows, three copies) become one;
//! - `swiglu_rows`: silu(gate)·up of several rows read straight out of the fused gate/up product
//!   with MLX's own element-wise functors (what its compiled `swiglu` runs): the two part copies
//!   of stacked rows disappear. Gated by its own self-check (`swiglu_enabled`).
//!
//! `MLX_SERVING_CUDA_KERNELS=0` turns them off (A/B measurements, or a driver where NVRTC fails).
//!
//! Each kernel has a reference: the MLX operations it replaces (`reference_*`). The one-time
//! self-check compares the two; `set_reference_ops` runs the whole fused decode path with the
//! references on any backend, so tests on machines without a GPU cover the path's plumbing
//! (row layouts, positions, caches) — the kernels themselves are checked on the GPU by
//! `examples/cuda_kernels_check.rs`.

use std::cell::OnceCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::cuda_kernel::{CudaKernel, Launch};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Whether decode passes use the fused kernels: on MLX's CUDA backend, unless switched off, and
/// only once a self-check on this machine has compiled them and found their results identical
/// to MLX's operations (a driver or toolkit where NVRTC cannot build them, or any difference,
/// leaves the engine on MLX's operations with a warning instead of failing requests).
pub fn enabled() -> bool {
    if reference_ops() {
        return true;
    }
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        if crate::services::runtime_info::device() != "cuda" || std::env::var("MLX_SERVING_CUDA_KERNELS").is_ok_and(|v| v == "0") {
            return false;
        }
        passes_self_check("fused CUDA decode kernels", self_check)
    })
}

static REFERENCE_OPS: AtomicBool = AtomicBool::new(false);
static REFERENCE_HEADS: AtomicU64 = AtomicU64::new(0);

/// Test hook: with `true`, decode passes take the fused path on any backend, computing each
/// kernel's result with its reference MLX operations (the same values, other kernels).
pub fn set_reference_ops(on: bool) {
    REFERENCE_OPS.store(on, Ordering::Relaxed);
}

/// How many `decode_heads` calls the reference operations have served (one per layer of each
/// fused pass run under `set_reference_ops(true)`): lets a test see that the path ran.
pub fn reference_head_calls() -> u64 {
    REFERENCE_HEADS.load(Ordering::Relaxed)
}

pub(crate) fn reference_ops() -> bool {
    REFERENCE_OPS.load(Ordering::Relaxed)
}

/// The gate of a kernel beside these (few-row products, range attention), run once: MLX's CUDA
/// backend (not the reference operations), the fused kernels on, the kernel's own switch on, and
/// its self-check passed.
pub(crate) fn kernel_gate(what: &str, switched_on: bool, check: impl FnOnce() -> MlxResult<bool>) -> bool {
    let cuda = crate::services::runtime_info::device() == "cuda";
    cuda && switched_on && enabled() && passes_self_check(what, check)
}

/// Runs a kernel's self-check once: `true` when it compiled and matched MLX exactly; otherwise
/// a warning naming `what` and `false` (the caller keeps MLX's operations).
pub(crate) fn passes_self_check(what: &str, check: impl FnOnce() -> MlxResult<bool>) -> bool {
    match check() {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!("{what}: results differ from MLX's operations on this machine; using MLX's operations");
            false
        }
        Err(e) => {
            tracing::warn!("{what}: unavailable ({}); using MLX's operations", e.what());
            false
        }
    }
}

/// Standard-normal values of `shape` in `dtype` from the seeded key `seed` (self-check inputs).
pub(crate) fn seeded_normal(shape: &[i32], seed: u64, dtype: Dtype) -> MlxResult<Array> {
    mlx_rs::random::normal::<f32>(shape, None, None, Some(&mlx_rs::random::key(seed)?))?.as_dtype(dtype)
}

/// Largest |got − want| relative to the largest |want| (f32), for kernels checked within a
/// tolerance; evaluated here, so a kernel that cannot build is an error returned.
pub fn relative_error(got: &Array, want: &Array) -> MlxResult<f32> {
    use mlx_rs::ops;
    let (got, want) = (got.as_dtype(Dtype::Float32)?, want.as_dtype(Dtype::Float32)?);
    let err = ops::max(&ops::abs(&ops::subtract(&got, &want)?)?, None)?;
    let scale = ops::max(&ops::abs(&want)?, None)?;
    mlx_rs::transforms::eval([&err, &scale])?;
    Ok(err.item_cast::<f32>() / scale.item_cast::<f32>().max(f32::MIN_POSITIVE))
}

/// Whether every (got, want) pair is exactly equal; evaluated here, so a kernel NVRTC cannot
/// build is an error returned, not a panic.
pub(crate) fn all_equal(pairs: &[(Array, Array)]) -> MlxResult<bool> {
    let equal: Vec<Array> = pairs.iter().map(|(got, want)| mlx_rs::ops::array_eq(got, want, false)).collect::<MlxResult<_>>()?;
    mlx_rs::transforms::eval(equal.iter())?;
    Ok(equal.iter().all(|e| e.try_item_exact::<bool>().unwrap_or(false)))
}

/// Both kernels on small random inputs against the MLX operations they replace: exact equality.
fn self_check() -> MlxResult<bool> {
    let normal = |shape: &[i32], seed: u64| seeded_normal(shape, seed, Dtype::Bfloat16);
    let (x, d, w) = (normal(&[1, 3, 2048], 1)?, normal(&[1, 3, 2048], 2)?, normal(&[2048], 3)?);
    let Some((h, y)) = add_rms_norm(&x, &d, &w, 1e-5)? else { return Ok(false) };
    let (h_ref, y_ref) = reference_add_rms_norm(&x, &d, &w, 1e-5)?;
    let (heads, kv_heads, dim) = (4, 2, 64);
    let product = normal(&[1, 3, (heads + 2 * kv_heads) * dim], 4)?;
    let positions = Array::from_slice(&[5, 17, 300], &[3]);
    let rope = RopeParams { traditional: false, base: 10000.0, freqs: None, scale: 1.0 };
    let layout = HeadLayout { heads, kv_heads, head_dim: dim, rope: &rope, norms: None };
    let (q, k, v) = decode_heads(&product, &positions, &layout)?;
    let (q_ref, k_ref, v_ref) = reference_decode_heads(&product, &positions, &layout)?;
    all_equal(&[(h, h_ref), (y, y_ref), (q, q_ref), (k, k_ref), (v, v_ref)])
}

/// What `add_rms_norm` computes, as MLX's `add` then `rms_norm`.
fn reference_add_rms_norm(x: &Array, d: &Array, w: &Array, eps: f32) -> MlxResult<(Array, Array)> {
    let h = mlx_rs::ops::add(x, d)?;
    let y = mlx_rs::fast::rms_norm(&h, Some(w), eps)?;
    Ok((h, y))
}

/// What `decode_heads` computes, as MLX's slicing, `rms_norm` and `rope` (each row rotated at
/// its own position).
fn reference_decode_heads(product: &Array, positions: &Array, l: &HeadLayout<'_>) -> MlxResult<(Array, Array, Array)> {
    use mlx_rs::ops::indexing::TryIndexOp;
    let (rows, d) = (positions.shape()[0], l.head_dim);
    let part = |a: i32, b: i32| -> MlxResult<Array> { product.try_index((.., .., a * d..b * d))?.reshape(&[rows, b - a, 1, d]) };
    let rotate = |t: Array, norm: Option<&Array>| -> MlxResult<Array> {
        let t = match (norm, l.norms) {
            (Some(w), Some((_, _, eps))) => mlx_rs::fast::rms_norm(&t, Some(w), eps)?,
            _ => t,
        };
        let base = if l.rope.freqs.is_some() { None } else { Some(l.rope.base) };
        mlx_rs::fast::rope_dynamic(&t, d, l.rope.traditional, base, l.rope.scale, positions, l.rope.freqs.as_ref())
    };
    let (h, hkv) = (l.heads, l.kv_heads);
    let q = rotate(part(0, h)?, l.norms.map(|n| n.0))?;
    let k = rotate(part(h, h + hkv)?, l.norms.map(|n| n.1))?;
    Ok((q, k, part(h + hkv, h + 2 * hkv)?))
}

/// What `swiglu_rows` computes: the parts copied out, then the compiled SwiGLU.
fn reference_swiglu_rows(product: &Array, f: i32) -> MlxResult<Array> {
    let parts = super::linear::split_last(product, &[f])?;
    super::activation::swiglu(&parts[0], &parts[1])
}

/// Elements per vector load in MLX's normalization kernels (16 bytes).
fn n_reads(dtype: Dtype) -> Option<i32> {
    match dtype {
        Dtype::Float32 => Some(4),
        Dtype::Float16 | Dtype::Bfloat16 => Some(8),
        _ => None,
    }
}

/// The (threads per row, vector loads per thread) MLX's `rms_norm` picks for rows of `axis`
/// elements (its `rms_norm_small` kernel), `None` where it uses another kernel. The reduction
/// order follows from these, so matching them is what makes the sums bit-identical.
pub(crate) fn rms_norm_blocking(axis: i32, n_reads: i32) -> Option<(i32, i32)> {
    if axis > n_reads * 128 * 8 {
        return None;
    }
    let nvec = (axis + n_reads - 1) / n_reads;
    let chunks = |n: i32| n.clamp(1, 8);
    Some(if axis <= n_reads * 64 {
        (64, 1)
    } else if nvec % 128 == 0 && nvec / 128 <= 8 {
        (128, chunks(nvec / 128))
    } else if nvec % 64 == 0 && nvec / 64 <= 8 {
        (64, chunks(nvec / 64))
    } else {
        (128, chunks((nvec + 127) / 128))
    })
}

const HEADER: &str = "#include <cooperative_groups/reduce.h>\n";

/// The block-wide sum of MLX's normalization kernels: a warp reduction, then the warps' sums
/// reduced by one warp (`BlockBroadcastReduce` in MLX's rms_norm.cu), broadcast to all threads.
const BLOCK_SUM: &str = r#"
  auto block = cg::this_thread_block();
  auto warp = cg::tiled_partition<32>(block);
  auto block_sum = [&](float v, float* partial) {
    v = cg::reduce(warp, v, cg::plus<float>());
    if (BLOCK > 32) {
      if (warp.thread_rank() == 0) partial[warp.meta_group_rank()] = v;
      block.sync();
      v = warp.thread_rank() < warp.meta_group_size() ? partial[warp.thread_rank()] : 0.f;
      v = cg::reduce(warp, v, cg::plus<float>());
    }
    return v;
  };
"#;

fn add_rms_norm_source() -> String {
    format!(
        r#"
  constexpr int N_READS = 16 / sizeof(T);
  __shared__ float partial[BLOCK / 32 > 0 ? BLOCK / 32 : 1];
  {BLOCK_SUM}
  const size_t row = blockIdx.x;
  const int t = threadIdx.x;
  T hv[CHUNKS][N_READS];
  float normalizer = 0;
  #pragma unroll
  for (int i = 0; i < CHUNKS; i++) {{
    const int base = (BLOCK * i + t) * N_READS;
    #pragma unroll
    for (int j = 0; j < N_READS; ++j) {{
      const int e = base + j;
      T v = T(0);
      if (e < AXIS) {{
        v = x[row * AXIS + e] + d[row * AXIS + e];
        h[row * AXIS + e] = v;
      }}
      hv[i][j] = v;
      float f = static_cast<float>(v);
      normalizer += f * f;
    }}
  }}
  normalizer = block_sum(normalizer, partial);
  normalizer = rsqrt(normalizer / AXIS + __int_as_float(EPS_BITS));
  #pragma unroll
  for (int i = 0; i < CHUNKS; i++) {{
    const int base = (BLOCK * i + t) * N_READS;
    #pragma unroll
    for (int j = 0; j < N_READS; ++j) {{
      const int e = base + j;
      if (e < AXIS) {{
        float yv = static_cast<float>(hv[i][j]) * normalizer;
        y[row * AXIS + e] = w[e] * static_cast<T>(yv);
      }}
    }}
  }}
"#
    )
}

/// The kernel for one variant: q/k norm weights and explicit frequencies are inputs only
/// when the layer has them (placeholder inputs would cost an operation each per layer).
fn decode_heads_source(norm: bool, freqs: bool) -> String {
    let norm_weight = if norm { "is_q ? qw : kw" } else { "static_cast<const T*>(nullptr)" };
    let inv_freq = if freqs { "1.0 / freqs[t]" } else { "exp2(-(static_cast<float>(t) / static_cast<float>(HALF)) * __int_as_float(BASE_BITS))" };
    format!(
        r#"
  constexpr int BLOCK = 64;
  constexpr int NH = H + 2 * HKV;
  constexpr int N_READS = 16 / sizeof(T);
  constexpr int HALF = D / 2;
  __shared__ float partial[2];
  __shared__ T xs[D];
  {BLOCK_SUM}
  const int row = blockIdx.x / NH;
  const int head = blockIdx.x % NH;
  const int t = threadIdx.x;
  const T* src = p + (size_t)row * NH * D + (size_t)head * D;
  if (head >= H + HKV) {{
    T* dst = v + ((size_t)row * HKV + (head - H - HKV)) * D;
    for (int e = t; e < D; e += BLOCK) dst[e] = src[e];
    return;
  }}
  const bool is_q = head < H;
  T* dst = is_q ? q + ((size_t)row * H + head) * D : k + ((size_t)row * HKV + (head - H)) * D;
  if (NORM) {{
    const T* w = {norm_weight};
    T xv[N_READS];
    float normalizer = 0;
    #pragma unroll
    for (int j = 0; j < N_READS; ++j) {{
      const int e = t * N_READS + j;
      T val = e < D ? src[e] : T(0);
      xv[j] = val;
      float f = static_cast<float>(val);
      normalizer += f * f;
    }}
    normalizer = block_sum(normalizer, partial);
    normalizer = rsqrt(normalizer / D + __int_as_float(EPS_BITS));
    #pragma unroll
    for (int j = 0; j < N_READS; ++j) {{
      const int e = t * N_READS + j;
      if (e < D) {{
        float yv = static_cast<float>(xv[j]) * normalizer;
        xs[e] = w[e] * static_cast<T>(yv);
      }}
    }}
  }} else {{
    for (int e = t; e < D; e += BLOCK) xs[e] = src[e];
  }}
  block.sync();
  if (t < HALF) {{
    int i1, i2;
    if (TRAD) {{ i1 = 2 * t; i2 = i1 + 1; }} else {{ i1 = t; i2 = t + HALF; }}
    float inv_freq = {inv_freq};
    float L = __int_as_float(SCALE_BITS) * static_cast<float>(pos[row]);
    float theta = L * inv_freq;
    float costheta = cos(theta);
    float sintheta = sin(theta);
    float x1 = static_cast<float>(xs[i1]);
    float x2 = static_cast<float>(xs[i2]);
    float rx1 = x1 * costheta - x2 * sintheta;
    float rx2 = x1 * sintheta + x2 * costheta;
    dst[i1] = static_cast<T>(rx1);
    dst[i2] = static_cast<T>(rx2);
  }}
"#
    )
}

thread_local! {
    static ADD_RMS_NORM: OnceCell<CudaKernel> = const { OnceCell::new() };
    /// One per (q/k norms, explicit frequencies) variant.
    static DECODE_HEADS: [OnceCell<CudaKernel>; 4] = const { [OnceCell::new(), OnceCell::new(), OnceCell::new(), OnceCell::new()] };
}

/// h = x + d and rms_norm(h)·w over the last axis, as MLX's `add` then `rms_norm` compute them.
/// `None` when MLX would use another normalization kernel (very wide rows) or the dtype is not
/// a float type: the caller then runs the two operations itself.
pub fn add_rms_norm(x: &Array, d: &Array, w: &Array, eps: f32) -> MlxResult<Option<(Array, Array)>> {
    let axis = *x.shape().last().unwrap_or(&0);
    let Some(reads) = n_reads(x.dtype()) else { return Ok(None) };
    let Some((block, chunks)) = rms_norm_blocking(axis, reads) else { return Ok(None) };
    if d.shape() != x.shape() || d.dtype() != x.dtype() || w.dtype() != x.dtype() || w.shape() != [axis] {
        return Ok(None);
    }
    if reference_ops() {
        return reference_add_rms_norm(x, d, w, eps).map(Some);
    }
    let rows = (x.size() as i32) / axis.max(1);
    let shape = x.shape().to_vec();
    let out = ADD_RMS_NORM.with(|k| {
        let k = k.get_or_init(|| CudaKernel::new("add_rms_norm", &["x", "d", "w"], &["h", "y"], &add_rms_norm_source(), HEADER));
        k.apply(
            &[x, d, w],
            &Launch {
                outputs: &[(&shape, x.dtype()), (&shape, x.dtype())],
                grid: (rows * block, 1, 1),
                block: (block, 1, 1),
                dtypes: &[(c"T", x.dtype())],
                ints: &[(c"BLOCK", block), (c"CHUNKS", chunks), (c"AXIS", axis), (c"EPS_BITS", eps.to_bits() as i32)],
                bools: &[],
            },
        )
    })?;
    let mut out = out.into_iter();
    Ok(Some((out.next().expect("two outputs"), out.next().expect("two outputs"))))
}

/// Rotary parameters of a decode pass's heads (`Rope::decode_params`).
pub struct RopeParams {
    pub traditional: bool,
    /// The base, when there are no explicit frequencies (the kernel takes its log2, as MLX's
    /// rope primitive does).
    pub base: f32,
    /// Explicit per-pair frequencies (float32 [head_dim / 2], as MLX's rope reads them):
    /// Llama-3 and similar scalings.
    pub freqs: Option<Array>,
    pub scale: f32,
}

/// What `decode_heads` needs to know about the attention layer.
pub struct HeadLayout<'a> {
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub rope: &'a RopeParams,
    /// Per-head RMSNorm weights of q and k and their epsilon (qwen3).
    pub norms: Option<(&'a Array, &'a Array, f32)>,
}

/// Whether `decode_heads` handles heads of this size and dtype (one 64-thread block per head,
/// as MLX normalizes rows of up to 128 elements; one thread per rotated pair).
pub fn heads_supported(head_dim: i32, dtype: Dtype) -> bool {
    let Some(reads) = n_reads(dtype) else { return false };
    head_dim % 2 == 0 && head_dim <= 128 && rms_norm_blocking(head_dim, reads) == Some((64, 1))
}

/// product: the fused q/k/v projection of one token per row, [1, rows, (heads + 2·kv_heads)·d]
/// (contiguous); positions: int32 [rows], each row's rotary offset. Returns q [rows, heads, 1,
/// d], k and v [rows, kv_heads, 1, d]: q and k RMS-normed per head (when the layer has those
/// norms) and rotated, v copied out.
pub fn decode_heads(product: &Array, positions: &Array, l: &HeadLayout<'_>) -> MlxResult<(Array, Array, Array)> {
    if reference_ops() {
        REFERENCE_HEADS.fetch_add(1, Ordering::Relaxed);
        return reference_decode_heads(product, positions, l);
    }
    let rows = positions.shape()[0];
    let dtype = product.dtype();
    let (h, hkv, d) = (l.heads, l.kv_heads, l.head_dim);
    let (norm, with_freqs) = (l.norms.is_some(), l.rope.freqs.is_some());
    let mut inputs: Vec<&Array> = vec![product, positions];
    let mut names = vec!["p", "pos"];
    if let Some((qw, kw, _)) = l.norms {
        inputs.extend([qw, kw]);
        names.extend(["qw", "kw"]);
    }
    if let Some(f) = &l.rope.freqs {
        inputs.push(f);
        names.push("freqs");
    }
    let eps = l.norms.map_or(0.0, |n| n.2);
    let out = DECODE_HEADS.with(|kernels| {
        let k = kernels[usize::from(norm) * 2 + usize::from(with_freqs)]
            .get_or_init(|| CudaKernel::new("decode_heads", &names, &["q", "k", "v"], &decode_heads_source(norm, with_freqs), HEADER));
        k.apply(
            &inputs,
            &Launch {
                outputs: &[(&[rows, h, 1, d], dtype), (&[rows, hkv, 1, d], dtype), (&[rows, hkv, 1, d], dtype)],
                grid: (rows * (h + 2 * hkv) * 64, 1, 1),
                block: (64, 1, 1),
                dtypes: &[(c"T", dtype)],
                ints: &[
                    (c"H", h),
                    (c"HKV", hkv),
                    (c"D", d),
                    (c"EPS_BITS", eps.to_bits() as i32),
                    (c"SCALE_BITS", l.rope.scale.to_bits() as i32),
                    (c"BASE_BITS", if l.rope.base > 0.0 { l.rope.base.log2() } else { 0.0 }.to_bits() as i32),
                ],
                bools: &[(c"NORM", norm), (c"TRAD", l.rope.traditional)],
            },
        )
    })?;
    let mut out = out.into_iter();
    Ok((out.next().expect("q"), out.next().expect("k"), out.next().expect("v")))
}

/// MLX's element-wise functors, as its compiled kernels include them.
const ELEMENTWISE_HEADER: &str = "#include \"mlx/backend/cuda/device/binary_ops.cuh\"\n#include \"mlx/backend/cuda/device/unary_ops.cuh\"\n";

/// One thread per output element; the same functor calls and intermediate types as the kernel
/// MLX compiles for `silu(g) * u` (activation.rs), so the same bits.
const SWIGLU_ROWS_SOURCE: &str = r#"
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  const size_t n = (size_t)p_shape[1] * F;
  if (i >= n) return;
  const size_t r = i / F, c = i % F;
  T g = p[r * 2 * F + c];
  T u = p[r * 2 * F + F + c];
  T s = Sigmoid{}(g);
  T gs = Multiply{}(g, s);
  y[i] = Multiply{}(gs, u);
"#;

thread_local! {
    static SWIGLU_ROWS: OnceCell<CudaKernel> = const { OnceCell::new() };
}

/// Whether `swiglu_rows` may replace the split + compiled SwiGLU of stacked rows: CUDA, kernels
/// on, and its own one-time self-check passed (exact equality with MLX's compiled kernel).
pub fn swiglu_enabled() -> bool {
    if reference_ops() {
        return true;
    }
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        if !enabled() {
            return false;
        }
        passes_self_check("fused SwiGLU kernel", || {
            let f = 96;
            let product = seeded_normal(&[1, 3, 2 * f], 7, Dtype::Bfloat16)?;
            all_equal(&[(swiglu_rows(&product, f)?, reference_swiglu_rows(&product, f)?)])
        })
    })
}

/// product: the fused gate/up projection [1, rows, 2·f] (gate then up, contiguous) →
/// silu(gate)·up [1, rows, f].
pub fn swiglu_rows(product: &Array, f: i32) -> MlxResult<Array> {
    if reference_ops() {
        return reference_swiglu_rows(product, f);
    }
    let rows = product.shape()[1];
    let dtype = product.dtype();
    let out = SWIGLU_ROWS.with(|k| {
        let k = k.get_or_init(|| CudaKernel::new("swiglu_rows", &["p"], &["y"], SWIGLU_ROWS_SOURCE, ELEMENTWISE_HEADER));
        k.apply(
            &[product],
            &Launch {
                outputs: &[(&[1, rows, f], dtype)],
                grid: (rows * f, 1, 1),
                block: (256, 1, 1),
                dtypes: &[(c"T", dtype)],
                ints: &[(c"F", f)],
                bools: &[],
            },
        )
    })?;
    Ok(out.into_iter().next().expect("one output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocking mirrors MLX's dispatch for the row widths of real models (hidden sizes and
    /// head sizes): it decides the reduction order, hence bit-identical sums.
    #[test]
    fn blocking_follows_mlx_dispatch() {
        // bf16/f16 (8 per load)
        assert_eq!(rms_norm_blocking(128, 8), Some((64, 1))); // head_dim 128
        assert_eq!(rms_norm_blocking(64, 8), Some((64, 1)));
        assert_eq!(rms_norm_blocking(576, 8), Some((128, 1))); // SmolLM2-135M: nvec 72
        assert_eq!(rms_norm_blocking(2048, 8), Some((128, 2))); // Llama-3.2-1B: nvec 256
        assert_eq!(rms_norm_blocking(2560, 8), Some((64, 5))); // Qwen3-4B: nvec 320
        assert_eq!(rms_norm_blocking(3072, 8), Some((128, 3))); // Llama-3.2-3B: nvec 384
        assert_eq!(rms_norm_blocking(8192, 8), Some((128, 8)));
        assert_eq!(rms_norm_blocking(8200, 8), None); // wider: MLX's looping kernel
        // f32 (4 per load)
        assert_eq!(rms_norm_blocking(2048, 4), Some((128, 4)));
        assert_eq!(rms_norm_blocking(896, 4), Some((128, 2))); // nvec 224: neither multiple
        assert!(heads_supported(128, Dtype::Bfloat16) && heads_supported(64, Dtype::Float32));
        assert!(!heads_supported(256, Dtype::Bfloat16), "one 64-thread block rotates at most 64 pairs");
        assert!(!heads_supported(128, Dtype::Int32));
    }
}
