//! Which BLAS serves MLX's CPU matmuls (DESIGN.md decision 8): the symbol `cblas_sgemm` as the
//! dynamic linker resolves it from our own object's lookup scope (the scope libmlx shares when it
//! is loaded as our dependency), then `dladdr` names the library that holds it. Reported in
//! `getRuntimeInfo().backend.blas`; a reference (unoptimized) BLAS logs one warning.

use std::ffi::CStr;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlasInfo {
    /// `openblas` | `mkl` | `blis` | `accelerate` | `reference` | `unknown` | `none`
    pub kind: &'static str,
    /// File name of the library serving `cblas_sgemm` (e.g. `libopenblas.so.0`).
    pub library: String,
    /// Full path as loaded.
    pub path: String,
    /// OpenBLAS's thread count, when it is OpenBLAS.
    pub threads: Option<i32>,
    /// MLX's products with few rows run as GEMV (services::blas_rows bound and enabled).
    pub rows_as_gemv: bool,
}

impl BlasInfo {
    pub fn optimized(&self) -> bool {
        matches!(self.kind, "openblas" | "mkl" | "blis" | "accelerate")
    }

    /// e.g. `openblas (libopenblas.so.0)` or `reference (libblas-bd8a282c.so.3.10.0)`.
    pub fn describe(&self) -> String {
        if self.library.is_empty() {
            self.kind.to_string()
        } else {
            format!("{} ({})", self.kind, self.library)
        }
    }
}

fn classify(file: &str) -> &'static str {
    let f = file.to_ascii_lowercase();
    if f.contains("openblas") {
        "openblas"
    } else if f.contains("mkl") {
        "mkl"
    } else if f.contains("blis") {
        "blis"
    } else if f.contains("accelerate") || f.contains("veclib") {
        "accelerate"
    } else if f.contains("libblas") || f.contains("libcblas") {
        // The mlx-cpu wheel's bundled libblas-<hash>.so (netlib reference), or Debian's libblas.so.3
        // when it is not an alternative for an optimized one (then the name would say so above).
        "reference"
    } else {
        "unknown"
    }
}

unsafe fn symbol(name: &CStr) -> *mut libc::c_void {
    libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr())
}

fn detect() -> BlasInfo {
    let none = BlasInfo { kind: "none", library: String::new(), path: String::new(), threads: None, rows_as_gemv: false };
    unsafe {
        let mut sym = symbol(c"cblas_sgemm") as *const libc::c_void;
        // MLX's calls bound to our few-rows shim (blas_rows): the library is the one it passes
        // the other products to.
        let shimmed = sym == super::blas_rows::shim_address();
        if shimmed {
            sym = super::blas_rows::next().sgemm.map_or(std::ptr::null(), |f| f as *const libc::c_void);
        }
        if sym.is_null() {
            return none;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(sym, &mut info) == 0 || info.dli_fname.is_null() {
            return BlasInfo { kind: "unknown", ..none };
        }
        let path = CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
        let library = path.rsplit('/').next().unwrap_or(&path).to_string();
        let kind = classify(&library);
        let threads = if kind == "openblas" {
            let f = symbol(c"openblas_get_num_threads");
            (!f.is_null()).then(|| {
                let f: extern "C" fn() -> libc::c_int = std::mem::transmute(f);
                f()
            })
        } else {
            None
        };
        BlasInfo { kind, library, path, threads, rows_as_gemv: shimmed && super::blas_rows::forwarding() }
    }
}

/// OpenBLAS 0.3.21 (Debian 12's) can hang a process at exit: its library destructor joins the
/// BLAS worker threads, and a worker that was just deciding to sleep misses the wake-up (it
/// checks its queue without the lock, then sleeps after the shutdown signal) — seen here as a
/// test binary stuck for minutes after its last test. Upstream later stopped joining at exit;
/// we do the same: an exit handler (it runs before library destructors) marks the BLAS server
/// as already down, so the destructor returns at once and the exiting process ends the threads.
pub fn install_exit_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if blas_info().kind != "openblas" {
            return;
        }
        extern "C" fn skip_openblas_thread_join() {
            unsafe {
                let avail = symbol(c"blas_server_avail") as *mut libc::c_int;
                if !avail.is_null() {
                    std::ptr::write_volatile(avail, 0);
                }
            }
        }
        unsafe {
            libc::atexit(skip_openblas_thread_join);
        }
    });
}

/// Detected once per process; the first call logs a warning when the BLAS is not optimized.
pub fn blas_info() -> &'static BlasInfo {
    static INFO: OnceLock<BlasInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let info = detect();
        if !info.optimized() && super::runtime_info::device() == "cpu" {
            let msg = format!(
                "[mlx-serving] warning: MLX's CPU matmuls use BLAS '{}': no optimized BLAS was linked \
                 (install libopenblas0-pthread and rebuild); generation works but prefill is ~10-40x slower",
                info.describe()
            );
            tracing::warn!("{msg}");
            eprintln!("{msg}");
        }
        info
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_library_names() {
        assert_eq!(classify("libopenblas.so.0"), "openblas");
        assert_eq!(classify("libopenblasp-r0.3.21.so"), "openblas");
        assert_eq!(classify("libblas-bd8a282c.so.3.10.0"), "reference");
        assert_eq!(classify("libmkl_rt.so.2"), "mkl");
        assert_eq!(classify("libfoo.so"), "unknown");
    }

    #[test]
    fn describe_formats() {
        let i = BlasInfo { kind: "openblas", library: "libopenblas.so.0".into(), path: String::new(), threads: Some(2), rows_as_gemv: true };
        assert_eq!(i.describe(), "openblas (libopenblas.so.0)");
        let r = BlasInfo { kind: "reference", library: "libblas.so.3".into(), path: String::new(), threads: None, rows_as_gemv: false };
        assert_eq!(r.describe(), "reference (libblas.so.3)");
        assert!(!r.optimized());
    }
}
