//! napi-build setup plus the runtime search path for libmlx.so. The MLX runtime (the official
//! wheel) is installed inside the package at `mlx-runtime/`, next to the built `.node`, so the
//! rpath is `$ORIGIN`-relative: no LD_LIBRARY_PATH or other environment for users.
//! On Linux the addon also depends directly on Debian's OpenBLAS (crates/core/build_blas.rs), so
//! MLX's CPU matmuls use it instead of the wheel's reference BLAS.
#[path = "crates/core/build_blas.rs"]
mod build_blas;

fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-env-changed=MLX_RPATH");
    let rpath = std::env::var("MLX_RPATH").unwrap_or_else(|_| "$ORIGIN/mlx-runtime/mlx/lib".to_string());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
    build_blas::link_optimized_blas();
}
