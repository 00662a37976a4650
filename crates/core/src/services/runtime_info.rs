//! Runtime facts: package and MLX versions, the device MLX computes on, the BLAS serving its CPU
//! matmuls, capabilities.

use serde_json::{json, Value};

pub fn mlx_version() -> String {
    unsafe {
        let mut s = mlx_sys::mlx_string_new();
        let ok = mlx_sys::mlx_version(&mut s) == 0;
        let out = if ok { std::ffi::CStr::from_ptr(mlx_sys::mlx_string_data(s)).to_string_lossy().into_owned() } else { "unknown".into() };
        mlx_sys::mlx_string_free(s);
        out
    }
}

/// 'metal' | 'cuda' | 'cpu': which backend this MLX build computes on by default.
pub fn device() -> &'static str {
    let mut cuda = false;
    let mut metal = false;
    unsafe {
        mlx_sys::mlx_cuda_is_available(&mut cuda);
        mlx_sys::mlx_metal_is_available(&mut metal);
    }
    if metal {
        "metal"
    } else if cuda {
        "cuda"
    } else {
        "cpu"
    }
}

pub const CAPABILITIES: &[&str] = &["load_model", "generate", "tokenize", "batch_tokenize", "check_draft", "batch_check_draft", "guidance", "load_vision_model", "generate_with_image", "hub_download"];

pub fn runtime_info(package_version: &str) -> Value {
    let mlx = mlx_version();
    json!({
        "version": package_version,
        "mlxVersion": mlx,
        "protocol": "json-rpc-2.0",
        "capabilities": CAPABILITIES,
        "mlxSupported": true,
        "backend": backend(&mlx),
    })
}

/// `{device, mlxVersion, blas, blasThreads?, blasRowsAsGemv?, smallGemm?}`: `blas` names the library serving MLX's
/// `cblas_sgemm` (services::blas), e.g. `openblas (libopenblas.so.0)`.
fn backend(mlx: &str) -> Value {
    let blas = super::blas::blas_info();
    let mut b = json!({"device": device(), "mlxVersion": mlx, "blas": blas.describe()});
    if let Some(n) = blas.threads {
        b["blasThreads"] = json!(n);
    }
    if blas.kind != "none" {
        b["blasRowsAsGemv"] = json!(blas.rows_as_gemv);
        b["smallGemm"] = json!(blas.rows_as_gemv && super::blas_rows::small_kernel());
    }
    b
}
