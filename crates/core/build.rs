//! Test and bench binaries of this crate need libmlx.so at run time: point their rpath at the
//! MLX library directory our mlx-sys build found (DEP_MLX_LIBDIR). The shipped addon gets its
//! own `$ORIGIN`-relative rpath from the root build.rs. Both link OpenBLAS the same way
//! (build_blas.rs), so tests and benches run under the BLAS users get.
#[path = "build_blas.rs"]
mod build_blas;

fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIBDIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    build_blas::link_optimized_blas();
    build_blas::export_sgemm_shim();
}
