//! The CPU backend's fast defaults (DESIGN.md decision 8): the test binary links OpenBLAS the way
//! the addon does (crates/core/build_blas.rs), so MLX's `cblas_sgemm` must resolve to it; f16
//! weights load as f32 compute and quantized ones are dequantized to f32 on the CPU backend,
//! `computeDtype` overrides that, and the handle reports the memory cost.

mod common;
use common::fixture;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
use mlx_rs::{Array, Dtype};
use mlx_serving_core::models::{load_language_model_with, ComputeDtype, CausalModel};
use mlx_serving_core::services::{blas, blas_rows, runtime_info};
use mlx_serving_core::Engine;
use serde_json::json;

fn openblas_installed() -> bool {
    ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
        .iter()
        .any(|d| Path::new(d).join("libopenblas.so.0").exists())
        && std::env::var("MLX_SERVING_BLAS").map_or(true, |v| v != "none")
}

#[test]
fn runtime_info_reports_openblas_when_present() {
    let info = runtime_info::runtime_info("test");
    let reported = info["backend"]["blas"].as_str().expect("backend.blas").to_owned();
    if cfg!(target_os = "linux") && openblas_installed() {
        assert_eq!(reported, "openblas (libopenblas.so.0)", "MLX's cblas_sgemm is not OpenBLAS: {:?}", blas::blas_info());
        assert!(info["backend"]["blasThreads"].as_i64().unwrap_or(0) >= 1);
    } else {
        assert!(!reported.is_empty());
    }
    // And MLX's matmul works under it.
    let a = Array::from_slice(&[1f32, 2., 3., 4.], &[2, 2]);
    let c = mlx_rs::ops::matmul(&a, &a).unwrap();
    assert_eq!(c.as_slice::<f32>(), &[7., 10., 15., 22.]);
}

/// MLX's products with few rows (the decode step's) reach our shim (services/blas_rows.rs) and
/// equal the BLAS's own GEMM of the same rows: a weight product (B transposed) and an attention
/// values product (B as stored), each on the small-GEMM kernel where the CPU has AVX2/FMA, else
/// (weights) as GEMV.
#[test]
fn few_row_products_run_on_the_shim() {
    if !(cfg!(target_os = "linux") && openblas_installed()) || std::env::var("MLX_SERVING_GEMV").is_ok_and(|v| v == "0") {
        return;
    }
    let info = runtime_info::runtime_info("test");
    assert_eq!(info["backend"]["blasRowsAsGemv"], json!(true), "{:?}", blas::blas_info());
    assert_eq!(info["backend"]["smallGemm"], json!(blas_rows::small_kernel()));
    let normal = |shape: &[i32], seed: u64| mlx_rs::random::normal::<f32>(shape, None, None, Some(&mlx_rs::random::key(seed).unwrap())).unwrap();
    let w = normal(&[96, 40], 3);
    let v = normal(&[40, 72], 5);
    for (name, rows, b) in [("weights", 1, w.t()), ("weights", 3, w.t()), ("values", 3, v.clone())] {
        let x = normal(&[rows, 40], 4);
        let served = || blas_rows::forwarded_products() + blas_rows::small_products();
        let (before, small_before) = (served(), blas_rows::small_products());
        let y = mlx_rs::ops::matmul(&x, &b).unwrap();
        y.eval().unwrap();
        assert!(served() > before, "MLX's {rows}-row {name} product did not reach the shim");
        if blas_rows::small_kernel() {
            assert!(blas_rows::small_products() > small_before, "{name}: not on the small-GEMM kernel");
        }
        // Reference: the rows tiled to 64 (a GEMM the shim passes to the BLAS), first rows.
        let x64 = mlx_rs::ops::tile(&x, &[64 / rows + 1, 1]).unwrap().try_index(0..64).unwrap();
        let y64 = mlx_rs::ops::matmul(&x64, &b).unwrap();
        let diff = mlx_rs::ops::max(&mlx_rs::ops::abs(&mlx_rs::ops::subtract(&y, &y64.try_index(0..rows).unwrap()).unwrap()).unwrap(), None).unwrap();
        assert!(diff.item_cast::<f32>() < 1e-4, "{rows}-row {name} product differs from the GEMM by {}", diff.item_cast::<f32>());
    }
}

/// A copy of the `llama` fixture with every tensor stored as float16.
fn f16_copy(tag: &str) -> PathBuf {
    let src = PathBuf::from(fixture("llama"));
    let dst = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("llama-f16-{tag}"));
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let tensors = Array::load_safetensors(src.join("model.safetensors")).unwrap();
    let half: HashMap<String, Array> = tensors.into_iter().map(|(k, v)| (k, v.as_dtype(Dtype::Float16).unwrap())).collect();
    Array::save_safetensors(half, None, dst.join("model.safetensors")).unwrap();
    dst
}

fn greedy(model: &CausalModel, n: usize) -> Vec<i32> {
    let mut cache = model.new_cache();
    let mut input = vec![504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30];
    let mut out = vec![];
    for _ in 0..n {
        let ids = Array::from_slice(&input, &[1, input.len() as i32]);
        let logits = model.forward(&ids, &mut cache, true).unwrap();
        let tok = argmax_axis(&logits.reshape(&[-1]).unwrap(), -1, None).unwrap().item_cast::<i32>();
        out.push(tok);
        input = vec![tok];
    }
    out
}

#[test]
fn f16_weights_compute_in_f32_on_cpu() {
    assert_eq!(runtime_info::device(), "cpu", "these tests run on the CPU backend");
    let dir = f16_copy("models");
    let (auto, s_auto) = load_language_model_with(&dir, ComputeDtype::Auto).unwrap();
    assert_eq!((s_auto.dtype.as_str(), s_auto.stored_dtype.as_str()), ("float32", "float16"));
    let (stored, s_stored) = load_language_model_with(&dir, ComputeDtype::AsStored).unwrap();
    assert_eq!((s_stored.dtype.as_str(), s_stored.stored_dtype.as_str()), ("float16", "float16"));
    assert_eq!(s_auto.memory_bytes, 2 * s_stored.memory_bytes);
    assert_eq!(s_auto.parameter_count, s_stored.parameter_count);
    // f16 values are exact in f32: only the arithmetic's precision differs, not the greedy ids.
    assert_eq!(greedy(&auto, 8), greedy(&stored, 8));
}

#[test]
fn quantized_weights_dequantize_to_f32_on_cpu() {
    let dir = PathBuf::from(fixture("llama-4bit"));
    let (auto, s_auto) = load_language_model_with(&dir, ComputeDtype::Auto).unwrap();
    assert!(s_auto.dequantized);
    assert_eq!(s_auto.dtype, "float32");
    let (packed, s_packed) = load_language_model_with(&dir, ComputeDtype::AsStored).unwrap();
    assert!(!s_packed.dequantized);
    assert!(s_auto.memory_bytes > 4 * s_packed.memory_bytes, "{} vs {}", s_auto.memory_bytes, s_packed.memory_bytes);
    assert_eq!(greedy(&auto, 8), greedy(&packed, 8));
}

#[tokio::test]
async fn handle_reports_compute_dtype_and_memory() {
    let dir = f16_copy("engine");
    let path = dir.to_string_lossy().into_owned();
    let e = Engine::new();
    let h = e.load_model(&json!({"model": "f16", "localPath": path})).await.unwrap().handle;
    let m = &h["metadata"];
    assert_eq!((m["dtype"].as_str(), m["storedDtype"].as_str()), (Some("float32"), Some("float16")));
    let bytes_f32 = m["memoryUsage"].as_u64().unwrap();
    // A different computeDtype is a different variant of the same id: reloaded, not cached.
    let r = e.load_model(&json!({"model": "f16", "localPath": path, "computeDtype": "as-stored"})).await.unwrap();
    assert!(!r.cached);
    assert_eq!(r.handle["metadata"]["dtype"], "float16");
    assert_eq!(r.handle["metadata"]["memoryUsage"].as_u64().unwrap() * 2, bytes_f32);
    let bad = e.load_model(&json!({"model": "f16", "localPath": path, "computeDtype": "int3"})).await.unwrap_err();
    assert_eq!(bad.code, mlx_serving_core::ErrorCode::InvalidParams);
    e.shutdown().await;
}
