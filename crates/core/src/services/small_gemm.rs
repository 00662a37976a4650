//! Products of a few activation rows with a weight matrix, weights read once (and the small
//! products of attention, which pay more for a BLAS call's threading than for their arithmetic).
//!
//! A decode step of several stacked rows multiplies m ≤ [`MAX_ROWS`] rows by each weight matrix
//! `W` [n, k] (`C = A·Wᵀ`). OpenBLAS 0.3.21 runs that through its packed GEMM (it copies the
//! whole matrix first), and one GEMV per row reads the matrix m times — from memory when it does
//! not fit in cache (lm_head 576×49152 at 8 rows: 18.9 ms as GEMM, 38 ms as 8 GEMVs, for 113 MB
//! of weights that stream in ~5 ms). This kernel takes two weight rows at a time and multiplies
//! them with every activation row while they sit in L1, so the matrix streams from memory once;
//! the columns are split over a small thread pool. Attention's probabilities-times-values products
//! (one query row per call, B not transposed) run here too: OpenBLAS threads them once the
//! context passes ~144 positions, and a wake-up per head and layer costs more than the product.
//!
//! Every output element is one dot product summed in the same order whatever m, the column
//! split or the thread count (8-lane partial sums over k, reduced in a fixed order, then the
//! tail), so a row's result does not depend on which other rows share its product: a stream
//! decoding alone or stacked with others gets bit-identical logits.

use std::sync::OnceLock;

/// The most rows this kernel takes (more rows amortize a packed GEMM's copy).
pub const MAX_ROWS: usize = 16;
/// Below this many multiply-adds the product runs on the calling thread.
const PARALLEL_WORK: usize = 1 << 18;

/// Whether this CPU runs the kernel (x86-64 with AVX2 and FMA).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Helpers for the calling thread, which computes one share itself: one fewer than the cores.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores.saturating_sub(1).max(1))
            .thread_name(|i| format!("mlx-serving-gemm-{i}"))
            .build()
            .expect("cannot start the small-GEMM threads")
    })
}

/// Runs `part(lo, hi)` over 0..n split into one range per pool thread plus one for the calling
/// thread (which takes the first range itself instead of sleeping while helpers work), each a
/// multiple of `multiple` long but the last; all of it on the caller when `n < 2`.
pub(crate) fn for_shares(n: usize, multiple: usize, part: impl Fn(usize, usize) + Sync) {
    let shares = (pool().current_num_threads() + 1).min(n.max(1));
    if shares < 2 {
        part(0, n);
        return;
    }
    let per = n.div_ceil(shares).next_multiple_of(multiple);
    let part = &part;
    pool().in_place_scope(|s| {
        let mut lo = per;
        while lo < n {
            let hi = (lo + per).min(n);
            s.spawn(move |_| part(lo, hi));
            lo = hi;
        }
        part(0, per.min(n));
    });
}

/// The operands of one product, as addresses so that pool threads can share them.
#[derive(Clone, Copy)]
struct Operands {
    m: usize,
    k: usize,
    alpha: f32,
    a: usize,
    lda: usize,
    b: usize,
    ldb: usize,
    beta: f32,
    c: usize,
    ldc: usize,
}

/// C[m×n] = alpha·A[m×k]·Bᵀ + beta·C with B stored n×k, all row-major with the given leading
/// dimensions. With beta = 0, C is written without being read.
///
/// # Safety
/// `available()` is true; 1 ≤ m ≤ MAX_ROWS; the pointers and leading dimensions describe valid
/// matrices (lda, ldb ≥ k; ldc ≥ n) and C does not overlap A or B.
pub unsafe fn a_times_b_transposed(m: usize, n: usize, k: usize, alpha: f32, a: *const f32, lda: usize, b: *const f32, ldb: usize, beta: f32, c: *mut f32, ldc: usize) {
    debug_assert!(available() && (1..=MAX_ROWS).contains(&m));
    let ops = Operands { m, k, alpha, a: a as usize, lda, b: b as usize, ldb, beta, c: c as usize, ldc };
    split_columns(ops, n, columns);
}

/// C[m×n] = alpha·A[m×k]·B + beta·C with B stored k×n (attention's probabilities times values,
/// one query row per call), all row-major. With beta = 0, C is written without being read.
///
/// # Safety
/// As [`a_times_b_transposed`], with ldb ≥ n.
pub unsafe fn a_times_b(m: usize, n: usize, k: usize, alpha: f32, a: *const f32, lda: usize, b: *const f32, ldb: usize, beta: f32, c: *mut f32, ldc: usize) {
    debug_assert!(available() && (1..=MAX_ROWS).contains(&m));
    let ops = Operands { m, k, alpha, a: a as usize, lda, b: b as usize, ldb, beta, c: c as usize, ldc };
    split_columns(ops, n, row_combinations);
}

/// Runs `part(ops, j0, j1)` over the n output columns: on the calling thread for small products,
/// else in one share per core, each a multiple of 8 columns (blocks stay whole, so a column is
/// computed the same way however the columns are split).
unsafe fn split_columns(ops: Operands, n: usize, part: unsafe fn(Operands, usize, usize)) {
    let shares = pool().current_num_threads() + 1;
    if ops.m * n * ops.k < PARALLEL_WORK || shares < 2 || n < 16 * shares {
        part(ops, 0, n);
        return;
    }
    for_shares(n, 8, |j0, j1| unsafe { part(ops, j0, j1) });
}

/// Output columns j0..j1 of A·B: each row of C accumulates the rows of B scaled by its entries
/// of A, 64 columns (eight registers) at a time, then 8, then one. Columns outside, rows inside:
/// a 64-column strip of B (k × 256 bytes) stays in L2 while every row of A meets it.
unsafe fn row_combinations(o: Operands, j0: usize, j1: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut j = j0;
        while j + 64 <= j1 {
            for i in 0..o.m {
                avx2::combine::<8>(&o, i, j);
            }
            j += 64;
        }
        while j + 8 <= j1 {
            for i in 0..o.m {
                avx2::combine::<1>(&o, i, j);
            }
            j += 8;
        }
        for j in j..j1 {
            for i in 0..o.m {
                avx2::combine_one(&o, i, j);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (o, j0, j1);
        unreachable!("small_gemm::available() is false off x86-64");
    }
}

/// Output columns j0..j1, eight weight rows at a time: each block (18 KB at k = 576) stays in L1
/// while every activation row meets it, so the matrix streams from memory once. Within a block,
/// tile shapes keep 6–8 independent accumulators (FMA latency, not loads, bounds a lone dot
/// product): 1 activation row × 8 weight rows, 2 × 4, 3 × 2, 4 × 2.
unsafe fn columns(o: Operands, j0: usize, j1: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut j = j0;
        while j + 8 <= j1 {
            let mut i = 0;
            while i < o.m {
                let rows = (o.m - i).min(4);
                match rows {
                    1 => avx2::tile::<1, 8>(&o, i, j),
                    2 => tiles::<2, 4>(&o, i, j),
                    3 => tiles::<3, 2>(&o, i, j),
                    _ => tiles::<4, 2>(&o, i, j),
                }
                i += rows;
            }
            j += 8;
        }
        for j in j..j1 {
            let mut i = 0;
            while i < o.m {
                let rows = (o.m - i).min(4);
                match rows {
                    1 => avx2::tile::<1, 1>(&o, i, j),
                    2 => avx2::tile::<2, 1>(&o, i, j),
                    3 => avx2::tile::<3, 1>(&o, i, j),
                    _ => avx2::tile::<4, 1>(&o, i, j),
                }
                i += rows;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (o, j0, j1);
        unreachable!("small_gemm::available() is false off x86-64");
    }
}

/// Rows i..i+R against the 8 weight rows from j, N at a time.
#[cfg(target_arch = "x86_64")]
unsafe fn tiles<const R: usize, const N: usize>(o: &Operands, i: usize, j: usize) {
    for q in (0..8).step_by(N) {
        avx2::tile::<R, N>(o, i, j + q);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::Operands;
    use std::arch::x86_64::*;

    /// Rows i..i+R of A times weight rows j..j+N: R·N dot products of length k.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize, const N: usize>(o: &Operands, i: usize, j: usize) {
        let (a, b) = (o.a as *const f32, o.b as *const f32);
        let mut acc = [[_mm256_setzero_ps(); N]; R];
        let full = o.k / 8 * 8;
        // The first row group reads these weight rows from memory: ask for the next block's
        // rows (8 further) meanwhile, a cache line per row every other step. A prefetch never
        // faults; the addresses past the matrix's end are only hints (wrapping arithmetic).
        let ahead = i == 0;
        let mut kk = 0;
        while kk < full {
            if ahead && kk % 16 == 0 {
                for q in 0..N {
                    _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add((j + q + 8) * o.ldb + kk) as *const i8);
                }
            }
            let mut w = [_mm256_setzero_ps(); N];
            for (q, wq) in w.iter_mut().enumerate() {
                *wq = _mm256_loadu_ps(b.add((j + q) * o.ldb + kk));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(a.add((i + r) * o.lda + kk));
                for (q, acc_rq) in acc_r.iter_mut().enumerate() {
                    *acc_rq = _mm256_fmadd_ps(x, w[q], *acc_rq);
                }
            }
            kk += 8;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let x = a.add((i + r) * o.lda);
            for (q, acc_rq) in acc_r.iter().enumerate() {
                let w = b.add((j + q) * o.ldb);
                let mut dot = sum8(*acc_rq);
                for t in full..o.k {
                    dot += *x.add(t) * *w.add(t);
                }
                let y = (o.c as *mut f32).add((i + r) * o.ldc + j + q);
                *y = if o.beta == 0.0 { o.alpha * dot } else { o.alpha * dot + o.beta * *y };
            }
        }
    }

    /// Row i of C, columns j..j+8V: Σ_t A[i,t]·B[t, j..j+8V], t in order.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn combine<const V: usize>(o: &Operands, i: usize, j: usize) {
        let (a, b) = (o.a as *const f32, o.b as *const f32);
        let mut acc = [_mm256_setzero_ps(); V];
        for t in 0..o.k {
            let x = _mm256_set1_ps(*a.add(i * o.lda + t));
            let row = b.add(t * o.ldb + j);
            for (q, acc_q) in acc.iter_mut().enumerate() {
                *acc_q = _mm256_fmadd_ps(x, _mm256_loadu_ps(row.add(8 * q)), *acc_q);
            }
        }
        let y = (o.c as *mut f32).add(i * o.ldc + j);
        let alpha = _mm256_set1_ps(o.alpha);
        for (q, acc_q) in acc.iter().enumerate() {
            let scaled = _mm256_mul_ps(alpha, *acc_q);
            let out = if o.beta == 0.0 { scaled } else { _mm256_fmadd_ps(_mm256_set1_ps(o.beta), _mm256_loadu_ps(y.add(8 * q)), scaled) };
            _mm256_storeu_ps(y.add(8 * q), out);
        }
    }

    /// One column of the above, for the last n mod 8 columns (the same fused steps, one lane).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn combine_one(o: &Operands, i: usize, j: usize) {
        let (a, b) = (o.a as *const f32, o.b as *const f32);
        let mut acc = 0f32;
        for t in 0..o.k {
            acc = (*a.add(i * o.lda + t)).mul_add(*b.add(t * o.ldb + j), acc);
        }
        let y = (o.c as *mut f32).add(i * o.ldc + j);
        *y = if o.beta == 0.0 { o.alpha * acc } else { o.beta.mul_add(*y, o.alpha * acc) };
    }

    /// The eight lanes' sum in a fixed order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum8(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps::<0b01>(pair, pair)))
    }
}

/// Deterministic test values in [-1, 1] (xorshift), shared by this module's and the shim's tests.
#[cfg(test)]
pub(crate) fn filled(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;


    /// C = alpha·A·op(B) + beta·C through the kernel: op(B) = Bᵀ (B n×k) or B (k×n).
    fn product(transposed: bool, m: usize, n: usize, k: usize, pads: (usize, usize, usize), alpha: f32, beta: f32, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (lda, ldb, ldc) = (k + pads.0, if transposed { k } else { n } + pads.1, n + pads.2);
        let f = if transposed { a_times_b_transposed } else { a_times_b };
        unsafe { f(m, n, k, alpha, a.as_ptr(), lda, b.as_ptr(), ldb, beta, c.as_mut_ptr(), ldc) };
    }

    /// Against a plain f64 product, both layouts of B, over row counts 1–16, odd column counts,
    /// k with and without a tail, padded leading dimensions, beta 0 over NaN and beta ≠ 0, one
    /// thread and the pool (large n·k).
    #[test]
    fn equals_the_reference_product() {
        if !available() {
            eprintln!("no AVX2/FMA on this CPU: the kernel is never used");
            return;
        }
        for transposed in [true, false] {
            for &(n, k) in &[(1, 1), (7, 5), (33, 17), (64, 100), (301, 1000), (2049, 576)] {
                for m in [1, 2, 3, 5, 8, 13, 16] {
                    for &(alpha, beta) in &[(1.0f32, 0.0f32), (1.5, 0.5)] {
                        let pads = (3, 1, 2);
                        let (lda, ldc) = (k + pads.0, n + pads.2);
                        let ldb = if transposed { k } else { n } + pads.1;
                        let b_at = |t: usize, j: usize| if transposed { j * ldb + t } else { t * ldb + j };
                        let a = filled(m * lda, 1);
                        let b = filled(if transposed { n * ldb } else { k * ldb }, 2);
                        let init = if beta == 0.0 { vec![f32::NAN; m * ldc] } else { filled(m * ldc, 3) };
                        let mut c = init.clone();
                        product(transposed, m, n, k, pads, alpha, beta, &a, &b, &mut c);
                        for i in 0..m {
                            for j in 0..n {
                                let dot: f64 = (0..k).map(|t| a[i * lda + t] as f64 * b[b_at(t, j)] as f64).sum();
                                let want = alpha as f64 * dot + if beta == 0.0 { 0.0 } else { beta as f64 * init[i * ldc + j] as f64 };
                                let got = c[i * ldc + j] as f64;
                                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "transposed {transposed} m{m} n{n} k{k} beta{beta} [{i},{j}]: {got} vs {want}");
                            }
                            for j in n..ldc {
                                assert_eq!(c[i * ldc + j].to_bits(), init[i * ldc + j].to_bits(), "padding written");
                            }
                        }
                    }
                }
            }
        }
    }

    /// A row's result is bit-identical whatever rows share the product and however the columns
    /// are split: row 0 alone equals row 0 among 1–16 rows.
    #[test]
    fn a_rows_result_does_not_depend_on_its_neighbours() {
        if !available() {
            return;
        }
        let (n, k) = (4099, 576);
        let a = filled(MAX_ROWS * k, 4);
        let b = filled(n * k, 5);
        for transposed in [true, false] {
            let mut alone = vec![0f32; n];
            product(transposed, 1, n, k, (0, 0, 0), 1.0, 0.0, &a, &b, &mut alone);
            for m in 2..=MAX_ROWS {
                let mut c = vec![0f32; m * n];
                product(transposed, m, n, k, (0, 0, 0), 1.0, 0.0, &a, &b, &mut c);
                assert!(c[..n].iter().zip(&alone).all(|(x, y)| x.to_bits() == y.to_bits()), "transposed {transposed}: row 0 differs at m = {m}");
            }
        }
    }
}
