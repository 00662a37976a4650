//! Shared by the root build.rs (the `.node`) and crates/core/build.rs (test/bench binaries):
//! on Linux, make Debian's OpenBLAS (`libopenblas0-pthread`, `libopenblas.so.0`) a direct
//! dependency of the linked binary, so MLX's `cblas_sgemm` (and LAPACK's BLAS calls) bind to it by
//! the dynamic linker's ordinary breadth-first lookup order, ahead of the reference BLAS bundled
//! in the `mlx-cpu` wheel (DESIGN.md decision 8). Nothing in our code calls OpenBLAS, so it is
//! wrapped in `--no-as-needed` or the linker would drop it. Without the library (other distros,
//! macOS) nothing is linked and the runtime reports the BLAS it finds.
//! `MLX_SERVING_BLAS=none` disables it; `MLX_SERVING_BLAS=/path/libopenblas.so.0` picks a file.

use std::path::{Path, PathBuf};

const CANDIDATE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];
const LIB: &str = "libopenblas.so.0";

fn find_openblas() -> Option<PathBuf> {
    match std::env::var("MLX_SERVING_BLAS").ok().as_deref() {
        Some("none") | Some("off") | Some("0") => return None,
        Some(p) if !p.is_empty() && Path::new(p).is_file() => return Some(PathBuf::from(p)),
        _ => {}
    }
    CANDIDATE_DIRS.iter().map(|d| Path::new(d).join(LIB)).find(|p| p.exists())
}

/// Emits the link arguments; returns the library linked, if any.
pub fn link_optimized_blas() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=MLX_SERVING_BLAS");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return None;
    }
    let lib = find_openblas()?;
    println!("cargo:rerun-if-changed={}", lib.display());
    let dir = lib.parent()?.display().to_string();
    let name = lib.file_name()?.to_string_lossy().into_owned();
    // One argument, so the order --no-as-needed / library / --as-needed cannot be split up.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-L{dir},-l:{name},--as-needed");
    Some(lib)
}

/// Executables (this crate's tests and benches) export our `cblas_sgemm` (services/blas_rows.rs)
/// so that libmlx binds to it as it does inside the addon, where a cdylib exports it anyway;
/// `-u` keeps the object that defines it in the link although nothing in the binary calls it.
pub fn export_sgemm_shim() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-u,cblas_sgemm,--export-dynamic-symbol=cblas_sgemm");
    }
}
