//! GPU check of the fused decode kernels (`models::fused_decode`, `models::rows_matmul`, `models::range_attention`): each kernel against the MLX
//! operations it replaces, on random inputs, element by element. The kernels are written to do
//! the same arithmetic in the same order, so the expected mismatch count is 0. Needs MLX's CUDA
//! backend (the kernels exist only there). Prints one line per case and exits non-zero on any
//! mismatch.
//!
//! usage: cuda_kernels_check

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array, Dtype};
use mlx_serving_core::models::fused_decode::{self, add_rms_norm, decode_heads, swiglu_rows, HeadLayout, RopeParams};
use mlx_serving_core::models::{range_attention, rows_matmul};

fn normal(shape: &[i32], seed: u64, dtype: Dtype) -> Array {
    let key = mlx_rs::random::key(seed).unwrap();
    mlx_rs::random::normal::<f32>(shape, None, None, Some(&key)).unwrap().as_dtype(dtype).unwrap()
}

/// (elements that differ, max |difference|)
fn compare(a: &Array, b: &Array) -> (i64, f32) {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.as_dtype(Dtype::Float32).unwrap(), b.as_dtype(Dtype::Float32).unwrap());
    let ne = ops::sum(&ops::ne(&a, &b).unwrap().as_dtype(Dtype::Int32).unwrap(), None).unwrap().item_cast::<i32>() as i64;
    let max = ops::max(&ops::abs(&ops::subtract(&a, &b).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
    (ne, max)
}

fn main() {
    // f32 references exact: MLX's CUDA backend runs f32 products on TF32 tensor cores by default
    // (~5e-4 relative), which the kernels' f32 paths are checked well below.
    if std::env::var_os("MLX_ENABLE_TF32").is_none() {
        std::env::set_var("MLX_ENABLE_TF32", "0");
    }
    let mut failures = 0;
    let mut report = |name: String, (ne, max): (i64, f32)| {
        println!("{name}: mismatches={ne} max_abs_diff={max:e}");
        if ne != 0 {
            failures += 1;
        }
    };
    let mut seed = 1;
    // KERNELS_CHECK_ONLY=<section> runs one section (add_rms_norm, decode_heads, swiglu_rows,
    // rows_matmul, range_attention)
    let only = std::env::var("KERNELS_CHECK_ONLY").ok();
    let want = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let mut inexact = 0;
    if want("add_rms_norm") {
        for dtype in [Dtype::Bfloat16, Dtype::Float16, Dtype::Float32] {
            for axis in [576, 2048, 2560, 3072] {
                for rows in [1, 16] {
                    seed += 3;
                    let x = normal(&[1, rows, axis], seed, dtype);
                    let d = normal(&[1, rows, axis], seed + 1, dtype);
                    let w = ops::add(&normal(&[axis], seed + 2, dtype), &Array::from_f32(1.0).as_dtype(dtype).unwrap()).unwrap();
                    let (h, y) = add_rms_norm(&x, &d, &w, 1e-5).unwrap().expect("covered width");
                    let h_ref = ops::add(&x, &d).unwrap();
                    let y_ref = fast::rms_norm(&h_ref, Some(&w), 1e-5).unwrap();
                    report(format!("add_rms_norm {dtype:?} axis={axis} rows={rows} sum"), compare(&h, &h_ref));
                    report(format!("add_rms_norm {dtype:?} axis={axis} rows={rows} norm"), compare(&y, &y_ref));
                }
            }
        }
    }
    if want("decode_heads") {
        // (heads, kv_heads, head_dim, q/k norms, explicit frequencies, traditional)
        let layouts = [(32, 8, 64, false, true, false), (32, 8, 128, true, false, false), (14, 2, 64, false, false, false), (8, 4, 128, false, false, true)];
        for dtype in [Dtype::Bfloat16, Dtype::Float32] {
            for &(h, hkv, d, norm, with_freqs, traditional) in &layouts {
                for rows in [1, 5, 16] {
                    seed += 7;
                    let product = normal(&[1, rows, (h + 2 * hkv) * d], seed, dtype);
                    let pos: Vec<i32> = (0..rows).map(|r| 17 + 131 * r + (seed as i32 % 50)).collect();
                    let positions = Array::from_slice(&pos, &[rows]);
                    let qw = normal(&[d], seed + 1, dtype);
                    let kw = normal(&[d], seed + 2, dtype);
                    let freqs = with_freqs.then(|| {
                        let f = ops::arange::<_, f32>(0, d, 2).unwrap();
                        ops::power(&Array::from_f32(500000.0), &ops::divide(&f, &Array::from_f32(d as f32)).unwrap()).unwrap()
                    });
                    let base = 10000f32;
                    let rope = RopeParams { traditional, base, freqs: freqs.clone(), scale: 1.0 };
                    let layout = HeadLayout { heads: h, kv_heads: hkv, head_dim: d, rope: &rope, norms: norm.then_some((&qw, &kw, 1e-6)) };
                    let (q, k, v) = decode_heads(&product, &positions, &layout).unwrap();
                    // the MLX operations the unfused decode path runs
                    let part = |a: i32, b: i32| product.try_index((.., .., a * d..b * d)).unwrap().reshape(&[rows, b - a, 1, d]).unwrap();
                    let rot = |x: Array, w: &Array| {
                        let x = if norm { fast::rms_norm(&x, Some(w), 1e-6).unwrap() } else { x };
                        let b = if with_freqs { None } else { Some(base) };
                        if rows == 1 {
                            fast::rope(&x, d, traditional, b, 1.0, pos[0], freqs.as_ref()).unwrap()
                        } else {
                            fast::rope_dynamic(&x, d, traditional, b, 1.0, &positions, freqs.as_ref()).unwrap()
                        }
                    };
                    let name = format!("decode_heads {dtype:?} h={h} hkv={hkv} d={d} norm={norm} freqs={with_freqs} trad={traditional} rows={rows}");
                    report(format!("{name} q"), compare(&q, &rot(part(0, h), &qw)));
                    report(format!("{name} k"), compare(&k, &rot(part(h, h + hkv), &kw)));
                    report(format!("{name} v"), compare(&v, &part(h + hkv, h + 2 * hkv)));
                }
            }
        }
    }
    if want("swiglu_rows") {
        // silu(gate)·up read out of the fused gate/up product, against MLX's ops on the parts (the
        // same functors, each result rounded to the dtype, as MLX's compiled SwiGLU)
        for dtype in [Dtype::Bfloat16, Dtype::Float16, Dtype::Float32] {
            for (f, rows) in [(8192, 2), (9728, 16), (96, 5)] {
                seed += 5;
                let product = normal(&[1, rows, 2 * f], seed, dtype);
                let got = swiglu_rows(&product, f).unwrap();
                let g = product.try_index((.., .., ..f)).unwrap();
                let u = product.try_index((.., .., f..)).unwrap();
                let want = ops::multiply(&ops::multiply(&g, &ops::sigmoid(&g).unwrap()).unwrap(), &u).unwrap();
                report(format!("swiglu_rows {dtype:?} f={f} rows={rows}"), compare(&got, &want));
            }
        }
    }
    if want("rows_matmul") {
        // few-row tensor-core products: within bf16/f16 rounding of an f32 product (cuBLAS's own
        // error printed beside it), and each row the same whatever rows are beside it; the shapes
        // cover each tile count and a partial last column tile (n = 44)
        for dtype in [Dtype::Bfloat16, Dtype::Float16] {
            for (k, n) in [(2048, 3072), (8192, 2048), (2560, 19456), (2048, 128256), (96, 44)] {
                let w = normal(&[n, k], seed, dtype);
                let x16 = normal(&[1, 16, k], seed + 1, dtype);
                let exact = ops::matmul(&x16.as_dtype(Dtype::Float32).unwrap(), &w.as_dtype(Dtype::Float32).unwrap().transpose().unwrap()).unwrap();
                let cublas = fused_decode::relative_error(&ops::matmul(&x16, &w.transpose().unwrap()).unwrap(), &exact).unwrap();
                for c in [1, 2, 4] {
                    seed += 3;
                    let all = rows_matmul::launch(&x16, &w, c).unwrap();
                    let err = fused_decode::relative_error(&all, &exact).unwrap();
                    let ok = err <= 1e-2;
                    println!("rows_matmul {dtype:?} k={k} n={n} tiles/warp={c}: relative error {err:e} (cuBLAS {cublas:e}){}", if ok { "" } else { " FAIL" });
                    if !ok {
                        inexact += 1;
                    }
                    for rows in [2, 5, 9] {
                        let part = rows_matmul::launch(&x16.try_index((.., ..rows, ..)).unwrap(), &w, c).unwrap();
                        report(format!("rows_matmul {dtype:?} k={k} n={n} tiles/warp={c} rows={rows} vs the same rows of 16"), compare(&part, &all.try_index((.., ..rows, ..)).unwrap()));
                    }
                }
            }
        }
    }
    if want("range_attention") {
        // range attention (opt-in kernel): the chunk variant against explicit_causal, the stacked
        // one against MLX's masked attention, on views of a longer cache
        for dtype in [Dtype::Bfloat16, Dtype::Float16, Dtype::Float32] {
            let tol = if dtype == Dtype::Float32 { 1e-4 } else { 2e-2 };
            for (h, hkv, d) in [(32, 8, 64), (32, 8, 128), (14, 2, 64)] {
                for (rows, n) in [(1, 1100), (2, 37), (5, 300), (16, 1100)] {
                    seed += 3;
                    let scale = 1.0 / (d as f32).sqrt();
                    let q = normal(&[rows, h, 1, d], seed, dtype);
                    let kbuf = normal(&[rows, hkv, n + 256, d], seed + 1, dtype);
                    let vbuf = normal(&[rows, hkv, n + 256, d], seed + 2, dtype);
                    let (keys, values) = (kbuf.try_index((..1, .., ..n, ..)).unwrap(), vbuf.try_index((..1, .., ..n, ..)).unwrap());
                    let got = range_attention::launch(&q, &keys, &values, None, scale).unwrap();
                    let want = range_attention::chunk_reference(&q, &keys, &values, scale).unwrap();
                    let mut errs = vec![("chunk", fused_decode::relative_error(&got, &want).unwrap())];
                    // stacked: row r holds its last held[r] of the n columns (1 ..= n)
                    let held: Vec<i32> = (0..rows).map(|r| 1 + (r * 7919 + seed as i32) % n).collect();
                    let positions = Array::from_slice(&held.iter().map(|x| x - 1).collect::<Vec<_>>(), &[rows]);
                    let allowed: Vec<bool> = held.iter().flat_map(|&x| (0..n).map(move |j| j >= n - x)).collect();
                    let mask = Array::from_slice(&allowed, &[rows, 1, 1, n]);
                    let (keys, values) = (kbuf.try_index((.., .., ..n, ..)).unwrap(), vbuf.try_index((.., .., ..n, ..)).unwrap());
                    let got = range_attention::launch(&q, &keys, &values, Some(&positions), scale).unwrap();
                    let want = range_attention::stacked_reference(&q, &keys, &values, &mask, scale).unwrap();
                    errs.push(("stacked", fused_decode::relative_error(&got, &want).unwrap()));
                    for (variant, err) in errs {
                        let ok = err <= tol;
                        println!("range_attention {variant} {dtype:?} h={h} hkv={hkv} d={d} rows={rows} keys={n}: relative error {err:e}{}", if ok { "" } else { " FAIL" });
                        if !ok {
                            inexact += 1;
                        }
                    }
                }
            }
        }
        // time per call (100 calls queued, then one wait; host encoding included), µs
        let time = |f: &dyn Fn() -> Array| {
            mlx_rs::transforms::eval([&f()]).unwrap();
            let t = std::time::Instant::now();
            let outs: Vec<Array> = (0..100).map(|_| f()).collect();
            mlx_rs::transforms::eval(outs.iter()).unwrap();
            t.elapsed().as_secs_f64() * 1e4
        };
        for (rows, n) in [(1, 1100), (7, 1100), (16, 1100)] {
            let (h, hkv, d) = (32, 8, 64);
            let scale = 1.0 / (d as f32).sqrt();
            let q = normal(&[rows, h, 1, d], 5, Dtype::Bfloat16);
            let kbuf = normal(&[1, hkv, n + 256, d], 6, Dtype::Bfloat16);
            let vbuf = normal(&[1, hkv, n + 256, d], 7, Dtype::Bfloat16);
            let (keys, values) = (kbuf.try_index((.., .., ..n, ..)).unwrap(), vbuf.try_index((.., .., ..n, ..)).unwrap());
            let ours = time(&|| range_attention::launch(&q, &keys, &values, None, scale).unwrap());
            let mlx = time(&|| range_attention::chunk_reference(&q, &keys, &values, scale).unwrap());
            println!("range_attention timing rows={rows} keys={n}: kernel {ours:.1} us, MLX path {mlx:.1} us per call");
        }
    }
    let failures = failures + inexact;
    println!("failures={failures}");
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
