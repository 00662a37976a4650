//! Matrix products with few rows as matrix-vector products.
//!
//! MLX's CPU matmul calls `cblas_sgemm` for every product, also for the decode step's, where one
//! token's activations (one row) meet each weight matrix. Debian 12's OpenBLAS (0.3.21) runs such
//! a call through its full GEMM path, which first packs the whole weight matrix: on a 2-core EPYC
//! that made a one-row product 2.0–2.4× slower than `cblas_sgemv` on the same matrix (SmolLM2
//! shapes, weights not in cache; docs/adr/blas-rows-as-gemv.md). Newer OpenBLAS releases
//! can forward such calls to GEMV themselves (a build option); this one does not.
//!
//! So this crate defines `cblas_sgemm` itself. The dynamic linker binds libmlx's calls to it,
//! because our object (the addon, or a test/bench executable that exports the symbol) comes
//! before the BLAS libraries in the lookup order. A row-major product with a plain A and up to
//! `small_gemm::MAX_ROWS` rows runs on our own kernel (`small_gemm`, AVX2/FMA CPUs); otherwise a
//! product with at most a few rows runs as one `cblas_sgemv` per row (while the weight matrix is
//! small enough to stay in cache between rows, up to [`MAX_ROWS_CACHED`]); every other call goes
//! unchanged to the BLAS's own `cblas_sgemm`, the next definition in the lookup order.
//! `MLX_SERVING_GEMV=0` turns all of it off (every call passes through),
//! `MLX_SERVING_SMALL_GEMM=0` the kernel only.

use std::ffi::{c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::small_gemm;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Rows forwarded for any weight size: at two rows, two GEMV passes over a weight matrix that does
/// not fit in cache still beat one packed GEMM (lm_head 576×49152: 9.7 vs 13.9 ms).
const MAX_ROWS_ANY: c_int = 2;
/// Rows forwarded while the weight matrix fits in a typical L3 slice (≤ 8 MiB): later rows read
/// it from cache (576×3072 at 8 rows: 0.80 vs 1.09 ms).
const MAX_ROWS_CACHED: c_int = 8;
const CACHED_BYTES: i64 = 8 << 20;
/// Fewest rows sent to `small_gemm`.
const MIN_SMALL_ROWS: c_int = 1;

type SgemmFn = unsafe extern "C" fn(c_int, c_int, c_int, c_int, c_int, c_int, f32, *const f32, c_int, *const f32, c_int, f32, *mut f32, c_int);
type SgemvFn = unsafe extern "C" fn(c_int, c_int, c_int, c_int, f32, *const f32, c_int, *const f32, c_int, f32, *mut f32, c_int);

/// The BLAS behind this shim.
pub(crate) struct Next {
    pub sgemm: Option<SgemmFn>,
    sgemv: Option<SgemvFn>,
    enabled: bool,
    /// Products of up to `small_gemm::MAX_ROWS` rows with a plain A run on `small_gemm`.
    small: bool,
}

static FORWARDED: AtomicU64 = AtomicU64::new(0);
static SMALL: AtomicU64 = AtomicU64::new(0);

pub(crate) fn next() -> &'static Next {
    static NEXT: OnceLock<Next> = OnceLock::new();
    NEXT.get_or_init(|| unsafe {
        let find = |name: &CStr| -> *mut c_void { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
        let sgemm = find(c"cblas_sgemm");
        let sgemv = find(c"cblas_sgemv");
        let on = |var: &str| std::env::var(var).map_or(true, |v| v != "0");
        let enabled = on("MLX_SERVING_GEMV");
        Next {
            sgemm: (!sgemm.is_null()).then(|| std::mem::transmute::<*mut c_void, SgemmFn>(sgemm)),
            sgemv: (!sgemv.is_null()).then(|| std::mem::transmute::<*mut c_void, SgemvFn>(sgemv)),
            enabled,
            small: enabled && on("MLX_SERVING_SMALL_GEMM") && small_gemm::available(),
        }
    })
}

/// This shim's own address (to tell whether MLX's calls are bound to it).
pub(crate) fn shim_address() -> *const c_void {
    cblas_sgemm as *const c_void
}

/// Products served as per-row GEMV calls since the process started.
pub fn forwarded_products() -> u64 {
    FORWARDED.load(Ordering::Relaxed)
}

/// Products served by `small_gemm` since the process started.
pub fn small_products() -> u64 {
    SMALL.load(Ordering::Relaxed)
}

/// Whether products with few rows run on `small_gemm` (AVX2/FMA CPU, not disabled).
pub fn small_kernel() -> bool {
    next().small
}

/// Whether products with few rows are forwarded to GEMV (a GEMV was found and it is not disabled).
pub fn forwarding() -> bool {
    let n = next();
    n.enabled && n.sgemv.is_some() && n.sgemm.is_some()
}

/// A product `small_gemm` takes (row-major, plain A, B transposed or as stored is checked by
/// the caller): 1..=MAX_ROWS rows, nothing empty.
fn small_rows(m: c_int, n: c_int, k: c_int) -> bool {
    m >= MIN_SMALL_ROWS && m as usize <= small_gemm::MAX_ROWS && n >= 1 && k >= 1
}

fn rows_forwarded(m: c_int, n: c_int, k: c_int) -> bool {
    m >= 1 && n >= 1 && k >= 1 && (m <= MAX_ROWS_ANY || (m <= MAX_ROWS_CACHED && n as i64 * k as i64 * 4 <= CACHED_BYTES))
}

/// Row-major C[m×n] = alpha·A[m×k]·op(B) + beta·C for Rust callers, through this shim (so
/// the same kernels MLX's products get): op(B) = Bᵀ with B stored n×k when `b_transposed`,
/// else B stored k×n.
///
/// # Safety
/// The slices behind the pointers hold the matrices their shapes and leading dimensions describe.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_row_major(b_transposed: bool, m: usize, n: usize, k: usize, alpha: f32, a: *const f32, lda: usize, b: *const f32, ldb: usize, beta: f32, c: *mut f32, ldc: usize) {
    let tb = if b_transposed { TRANS } else { NO_TRANS };
    cblas_sgemm(ROW_MAJOR, NO_TRANS, tb, m as c_int, n as c_int, k as c_int, alpha, a, lda as c_int, b, ldb as c_int, beta, c, ldc as c_int);
}

/// C[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C, the CBLAS interface.
///
/// # Safety
/// The CBLAS contract: pointers and leading dimensions describe valid matrices.
#[no_mangle]
pub unsafe extern "C" fn cblas_sgemm(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: f32,
    a: *const f32,
    lda: c_int,
    b: *const f32,
    ldb: c_int,
    beta: f32,
    c: *mut f32,
    ldc: c_int,
) {
    let next = next();
    let Some(sgemm) = next.sgemm else {
        // No BLAS behind us cannot happen while libmlx (which needs one) is loaded.
        eprintln!("[mlx-serving] fatal: cblas_sgemm called but no BLAS library provides it");
        std::process::abort();
    };
    if next.small && order == ROW_MAJOR && trans_a == NO_TRANS && (trans_b == TRANS || trans_b == NO_TRANS) && small_rows(m, n, k) {
        SMALL.fetch_add(1, Ordering::Relaxed);
        let (m, n, k) = (m as usize, n as usize, k as usize);
        let product = if trans_b == TRANS { small_gemm::a_times_b_transposed } else { small_gemm::a_times_b };
        product(m, n, k, alpha, a, lda as usize, b, ldb as usize, beta, c, ldc as usize);
        return;
    }
    match next.sgemv {
        Some(sgemv) if next.enabled && order == ROW_MAJOR && rows_forwarded(m, n, k) => {
            FORWARDED.fetch_add(1, Ordering::Relaxed);
            for i in 0..m as isize {
                // Row i of op(A): a row of A, or a column of A (stride lda) when A is transposed.
                let (x, incx) = if trans_a == NO_TRANS { (a.offset(i * lda as isize), 1) } else { (a.offset(i), lda) };
                let y = c.offset(i * ldc as isize);
                if beta == 0.0 {
                    // beta = 0 means C is not read (MLX hands over uninitialized memory, which may
                    // hold NaN bit patterns that a scale by zero would keep).
                    std::ptr::write_bytes(y, 0, n as usize);
                }
                if trans_b == NO_TRANS {
                    // op(B) = B, stored k×n: y = Bᵀ·x.
                    sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, x, incx, beta, y, 1);
                } else {
                    // op(B) = Bᵀ, B stored n×k (a weight matrix [out, in]): y = B·x.
                    sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, x, incx, beta, y, 1);
                }
            }
        }
        _ => sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::small_gemm::filled;

    /// Every transpose combination, strided (padded) leading dimensions, beta 0 over NaN garbage
    /// and beta ≠ 0: the forwarded product equals the BLAS's own GEMM.
    #[test]
    fn forwarded_products_equal_the_blas_gemm() {
        let nx = next();
        let (Some(sgemm), true) = (nx.sgemm, forwarding()) else {
            eprintln!("no BLAS with GEMV behind the shim (MLX_SERVING_GEMV=0?): nothing to compare");
            return;
        };
        let (before, small_before) = (forwarded_products(), small_products());
        for &(m, n, k) in &[(1, 7, 5), (2, 33, 17), (5, 16, 9), (8, 3, 40), (1, 1, 1)] {
            for ta in [111, 112] {
                for tb in [111, 112, 113] {
                    for beta in [0.0f32, 0.5] {
                        let (ar, ac) = if ta == 111 { (m, k) } else { (k, m) };
                        let (br, bc) = if tb == 111 { (k, n) } else { (n, k) };
                        let (lda, ldb, ldc) = (ac + 2, bc + 3, n + 1);
                        let a = filled((ar * lda) as usize, 1);
                        let b = filled((br * ldb) as usize, 2);
                        let init = if beta == 0.0 { vec![f32::NAN; (m * ldc) as usize] } else { filled((m * ldc) as usize, 3) };
                        let (mut c1, mut c2) = (init.clone(), init.clone());
                        unsafe {
                            cblas_sgemm(ROW_MAJOR, ta, tb, m, n, k, 1.5, a.as_ptr(), lda, b.as_ptr(), ldb, beta, c1.as_mut_ptr(), ldc);
                            sgemm(ROW_MAJOR, ta, tb, m, n, k, 1.5, a.as_ptr(), lda, b.as_ptr(), ldb, beta, c2.as_mut_ptr(), ldc);
                        }
                        for i in 0..m {
                            for j in 0..n {
                                let (x, y) = (c1[(i * ldc + j) as usize], c2[(i * ldc + j) as usize]);
                                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "m{m} n{n} k{k} ta{ta} tb{tb} beta{beta}: [{i},{j}] {x} vs {y}");
                            }
                        }
                        // Padding columns of C are never written.
                        for i in 0..m {
                            let pad = c1[(i * ldc + n) as usize];
                            assert!(pad.is_nan() == init[(i * ldc + n) as usize].is_nan());
                        }
                    }
                }
            }
        }
        assert!(forwarded_products() > before);
        if small_kernel() {
            assert!(small_products() > small_before);
        }
    }

    #[test]
    fn row_limits_follow_the_weight_size() {
        assert!(rows_forwarded(1, 49152, 576));
        assert!(rows_forwarded(2, 49152, 576));
        assert!(!rows_forwarded(4, 49152, 576));
        assert!(rows_forwarded(8, 3072, 576));
        assert!(!rows_forwarded(9, 3072, 576));
        assert!(!rows_forwarded(512, 576, 576));
        assert!(!rows_forwarded(1, 0, 576));
    }
}
