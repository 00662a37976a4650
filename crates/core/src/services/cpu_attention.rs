//! Attention over long sequences on MLX's CPU backend, computed here in blocks of queries.
//!
//! MLX's CPU `scaled_dot_product_attention` materializes every score (a Qwen2-VL tower layer over
//! a 1024×768 image: 16 heads × 3996² f32 = 1 GB, on fresh pages each time) and its softmax calls
//! a scalar exp whose every step is a call into libm's `fmaf` — profiled at ~19 ns per element,
//! 32 % of a CPU vision request's time-to-first-token (`perf`, Qwen2-VL-2B-shaped, 4 layers). Here
//! each head runs in blocks of query rows: scores = scale·Q·Kᵀ and out = P·V through the same
//! GEMM MLX's products use (the `cblas_sgemm` shim: OpenBLAS, or our few-rows kernel), and a
//! row-parallel softmax with an 8-lane exp (AVX2/FMA; a scalar loop of the same polynomial
//! elsewhere) into one reused buffer. f32 only (the CPU's compute dtype); batch 1; a causal mask
//! aligns the L queries with the last L of the N keys (query i sees keys 0..=N−L+i).
//!
//! The exp is a degree-6 polynomial on the reduced argument (Cephes' expf coefficients), within
//! about 2 ulp of the true value; results agree with MLX's attention to ~1e-6 relative, not bit
//! for bit. Short sequences keep MLX's kernel: they pay little for the exp, and parity with the
//! reference there stays exact. `MLX_SERVING_CPU_ATTENTION=0` turns this path off.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

use mlx_rs::{Array, Dtype};

use super::{blas_rows, small_gemm};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Queries × keys from which a pass takes this path by default (a 256-token prompt chunk over
/// itself).
pub const MIN_SCORES: i64 = 1 << 16;
static MIN_SCORES_NOW: AtomicI64 = AtomicI64::new(MIN_SCORES);

static PASSES: AtomicU64 = AtomicU64::new(0);

/// Attention passes computed here so far (tests check the path was taken).
pub fn passes() -> u64 {
    PASSES.load(Ordering::Relaxed)
}

/// Sets the queries × keys from which passes take this path (tests force it onto tiny fixtures
/// with 1; tuning).
pub fn set_min_scores(n: i64) {
    MIN_SCORES_NOW.store(n, Ordering::Relaxed);
}
/// Query rows per block: the block's scores (rows × keys f32) stay a few MB.
const BLOCK_ROWS: usize = 256;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        crate::services::runtime_info::device() == "cpu"
            && std::env::var("MLX_SERVING_CPU_ATTENTION").map_or(true, |v| v != "0")
            && blas_rows::next().sgemm.is_some()
    })
}

/// Whether attention of q [1, H, L, D] over k [1, Hkv, N, D] runs here.
pub(crate) fn applies(q: &Array, k: &Array) -> bool {
    let (qs, ks) = (q.shape(), k.shape());
    enabled()
        && qs.len() == 4
        && ks.len() == 4
        && qs[0] == 1
        && ks[0] == 1
        && q.dtype() == Dtype::Float32
        && k.dtype() == Dtype::Float32
        && ks[1] > 0
        && qs[1] % ks[1] == 0
        && qs[2] as i64 * ks[2] as i64 >= MIN_SCORES_NOW.load(Ordering::Relaxed)
}

/// softmax(scale·q·kᵀ [+ causal mask])·v for q [1, H, L, D], k and v [1, Hkv, N, D] (H a
/// multiple of Hkv; with `causal`, N ≥ L) → [1, H, L, D]. Evaluates its inputs.
pub(crate) fn attention(q: &Array, k: &Array, v: &Array, scale: f32, causal: bool) -> MlxResult<Array> {
    let (h, l, d) = (q.shape()[1] as usize, q.shape()[2] as usize, q.shape()[3] as usize);
    let (hkv, n) = (k.shape()[1] as usize, k.shape()[2] as usize);
    if causal && n < l {
        return Err(mlx_rs::error::Exception::custom(format!("causal attention of {l} queries over {n} keys")));
    }
    PASSES.fetch_add(1, Ordering::Relaxed);
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    mlx_rs::transforms::eval([&q, &k, &v])?;
    let (qd, kd, vd) = (q.as_slice::<f32>(), k.as_slice::<f32>(), v.as_slice::<f32>());
    let mut out = vec![0f32; h * l * d];
    let mut scores = vec![0f32; BLOCK_ROWS.min(l) * n];
    let group = h / hkv;
    for head in 0..h {
        let kv = head / group;
        let (kh, vh) = (&kd[kv * n * d..(kv + 1) * n * d], &vd[kv * n * d..(kv + 1) * n * d]);
        for r0 in (0..l).step_by(BLOCK_ROWS) {
            let rows = BLOCK_ROWS.min(l - r0);
            // keys the block's last row sees (a causal block never needs the later ones)
            let width = if causal { n - l + r0 + rows } else { n };
            let qb = &qd[(head * l + r0) * d..];
            let s = &mut scores[..rows * width];
            // SAFETY: Q rows r0.. (rows × d), K (width × d), scores (rows × width) are in bounds.
            unsafe { blas_rows::sgemm_row_major(true, rows, width, d, scale, qb.as_ptr(), d, kh.as_ptr(), d, 0.0, s.as_mut_ptr(), width) };
            let visible = |i: usize| if causal { n - l + r0 + i + 1 } else { n };
            let base = s.as_mut_ptr() as usize;
            small_gemm::for_shares(rows, 1, |lo, hi| {
                for i in lo..hi {
                    // SAFETY: each share owns rows lo..hi of the block's scores.
                    let row = unsafe { std::slice::from_raw_parts_mut((base as *mut f32).add(i * width), width) };
                    softmax_prefix(row, visible(i));
                }
            });
            let ob = &mut out[(head * l + r0) * d..];
            // SAFETY: P (rows × width), V (width × d), out rows r0.. (rows × d) are in bounds.
            unsafe { blas_rows::sgemm_row_major(false, rows, d, width, 1.0, s.as_ptr(), width, vh.as_ptr(), d, 0.0, ob.as_mut_ptr(), d) };
        }
    }
    Ok(Array::from_slice(&out, &[1, h as i32, l as i32, d as i32]))
}

/// Softmax of `row[..visible]` in place; the rest (masked keys) becomes 0.
fn softmax_prefix(row: &mut [f32], visible: usize) {
    let (live, masked) = row.split_at_mut(visible);
    masked.fill(0.0);
    let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_shifted(live, max);
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|x| *x *= inv);
}

/// x ← exp(x − shift) for every element; returns the sum of the results.
fn exp_shifted(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if small_gemm::available() {
            // SAFETY: AVX2 and FMA are present (checked above).
            return unsafe { avx2::exp_shifted(x, shift) };
        }
    }
    x.iter_mut().fold(0.0, |acc, v| {
        *v = exp_poly(*v - shift);
        acc + *v
    })
}

// exp(x) = 2^n · e^r with n = round(x·log2 e), r = x − n·ln 2 (ln 2 split in two for accuracy),
// e^r ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2 (Cephes expf's minimax coefficients).
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// Below this e^x is under f32's smallest normal; clamped there (the row's max is subtracted
/// first, so only negligible terms reach it).
const MIN_ARG: f32 = -87.3;

fn exp_poly(x: f32) -> f32 {
    let x = x.max(MIN_ARG);
    let n = (x * LOG2E).round();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let p = P.iter().skip(1).fold(P[0], |acc, &c| acc.mul_add(r, c));
    let e = p.mul_add(r * r, r) + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{exp_poly, LN2_HI, LN2_LO, LOG2E, MIN_ARG, P};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shifted(x: &mut [f32], shift: f32) -> f32 {
        let chunks = x.len() / 8;
        let (sh, lo) = (_mm256_set1_ps(shift), _mm256_set1_ps(MIN_ARG));
        let (log2e, hi_c, lo_c, one) = (_mm256_set1_ps(LOG2E), _mm256_set1_ps(-LN2_HI), _mm256_set1_ps(-LN2_LO), _mm256_set1_ps(1.0));
        let bias = _mm256_set1_epi32(127);
        let mut acc = _mm256_setzero_ps();
        let p = x.as_mut_ptr();
        for c in 0..chunks {
            let v = _mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(c * 8)), sh), lo);
            let n = _mm256_round_ps(_mm256_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            let r = _mm256_fmadd_ps(n, lo_c, _mm256_fmadd_ps(n, hi_c, v));
            let mut poly = _mm256_set1_ps(P[0]);
            for &coef in &P[1..] {
                poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(coef));
            }
            let e = _mm256_add_ps(_mm256_fmadd_ps(poly, _mm256_mul_ps(r, r), r), one);
            let scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), bias), 23));
            let y = _mm256_mul_ps(e, scale);
            _mm256_storeu_ps(p.add(c * 8), y);
            acc = _mm256_add_ps(acc, y);
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        let mut sum: f32 = lanes.iter().sum();
        for v in &mut x[chunks * 8..] {
            *v = exp_poly(*v - shift);
            sum += *v;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_arrays::{max_rel_diff, normal};
    use mlx_rs::fast::{self, ScaledDotProductAttentionMask};

    #[test]
    fn exp_is_within_a_few_ulp() {
        let xs: Vec<f32> = (0..20_000).map(|i| -87.0 + i as f32 * 0.0044).collect();
        let mut v = xs.clone();
        let sum = exp_shifted(&mut v, 0.0);
        let mut want_sum = 0f64;
        for (x, got) in xs.iter().zip(&v) {
            let want = (*x as f64).exp();
            want_sum += want;
            assert!(((*got as f64) - want).abs() <= 3e-7 * want, "exp({x}) = {got}, want {want}");
        }
        assert!((sum as f64 - want_sum).abs() <= 1e-5 * want_sum);
        // the scalar form (tails, other CPUs) is the same polynomial
        for x in [-80.5f32, -3.25, -0.5, 0.0] {
            assert!(((exp_poly(x) as f64) - (x as f64).exp()).abs() <= 3e-7 * (x as f64).exp());
        }
    }

    /// Equals MLX's attention: GQA, blocks of queries with a ragged last block, keys longer than
    /// queries with the causal mask, and a full (unmasked) pass like a vision tower's.
    #[test]
    fn equals_mlx_attention() {
        let (h, hkv, d) = (6, 2, 40);
        for (l, n, causal) in [(300, 300, true), (270, 700, true), (520, 520, false), (3, 40, false)] {
            let q = normal(&[1, h, l, d], 1);
            let k = normal(&[1, hkv, n, d], 2);
            let v = normal(&[1, hkv, n, d], 3);
            let mask = if causal { Some(ScaledDotProductAttentionMask::Causal) } else { None };
            let want = fast::scaled_dot_product_attention(&q, &k, &v, 0.2, mask, None).unwrap();
            let got = attention(&q, &k, &v, 0.2, causal).unwrap();
            assert_eq!(got.shape(), want.shape());
            let diff = max_rel_diff(&got, &want);
            assert!(diff < 2e-6, "(L {l}, N {n}, causal {causal}): relative difference {diff}");
        }
        // transposed (non-contiguous) inputs, as a tower's reshaped projections are
        let q = normal(&[1, 300, h, d], 4).transpose_axes(&[0, 2, 1, 3]).unwrap();
        let k = normal(&[1, 300, h, d], 5).transpose_axes(&[0, 2, 1, 3]).unwrap();
        let v = normal(&[1, 300, h, d], 6).transpose_axes(&[0, 2, 1, 3]).unwrap();
        let want = fast::scaled_dot_product_attention(&q, &k, &v, 0.3, None, None).unwrap();
        assert!(max_rel_diff(&attention(&q, &k, &v, 0.3, false).unwrap(), &want) < 2e-6);
    }

    #[test]
    fn applies_to_long_f32_passes_only() {
        let big = |l: i32| Array::zeros::<f32>(&[1, 4, l, 8]).unwrap();
        assert!(applies(&big(256), &big(256)));
        assert!(!applies(&big(16), &big(256)));
        assert!(!applies(&big(256).as_dtype(Dtype::Bfloat16).unwrap(), &big(256)));
        assert!(!applies(&Array::zeros::<f32>(&[2, 4, 256, 8]).unwrap(), &big(256)));
    }

    #[test]
    fn refuses_fewer_keys_than_causal_queries() {
        let q = Array::zeros::<f32>(&[1, 2, 300, 8]).unwrap();
        let k = Array::zeros::<f32>(&[1, 2, 200, 8]).unwrap();
        assert!(attention(&q, &k, &k, 1.0, true).is_err());
    }
}
