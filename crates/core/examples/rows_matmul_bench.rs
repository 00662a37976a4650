//! GPU timing of few-row products (`models::rows_matmul`) against MLX's matmul (cuBLAS for 2+
//! rows, its GEMV for one) on the weight shapes of Llama-3.2-1B and Qwen3-4B, bf16. Weights
//! rotate through ≥ 256 MB of copies so they come from device memory, as in a decode step.
//! Prints median µs per product (of 5 batches of 30 back-to-back products) and the weight
//! bandwidth it implies.
//!
//! usage: rows_matmul_bench

use std::time::Instant;

use mlx_rs::{ops, Array, Dtype};
use mlx_serving_core::models::rows_matmul;

fn time(f: &dyn Fn(&Array, &Array) -> Array, xs: &[Array], ws: &[Array]) -> f64 {
    let reps = 30;
    let batch = || {
        let outs: Vec<Array> = (0..reps).map(|i| f(&xs[i % xs.len()], &ws[i % ws.len()])).collect();
        mlx_rs::transforms::eval(outs.iter()).unwrap();
    };
    batch();
    batch();
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            batch();
            s.elapsed().as_secs_f64() / reps as f64 * 1e6
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[2]
}

fn main() {
    let shapes = [
        ("1B qkv", 2048, 3072),
        ("1B o", 2048, 2048),
        ("1B gate_up", 2048, 16384),
        ("1B down", 8192, 2048),
        ("1B head", 2048, 128256),
        ("4B qkv", 2560, 6144),
        ("4B o", 4096, 2560),
        ("4B gate_up", 2560, 19456),
        ("4B down", 9728, 2560),
    ];
    for (name, k, n) in shapes {
        let bytes = (n as f64) * (k as f64) * 2.0;
        let copies = ((256e6 / bytes).ceil() as usize).clamp(2, 32);
        let ws: Vec<Array> = (0..copies)
            .map(|i| mlx_rs::random::normal::<f32>(&[n, k], None, None, Some(&mlx_rs::random::key(i as u64).unwrap())).unwrap().as_dtype(Dtype::Bfloat16).unwrap())
            .collect();
        mlx_rs::transforms::eval(ws.iter()).unwrap();
        let mut line = format!("{name:10} k={k} n={n}:");
        for rows in [1, 2, 5, 8, 16] {
            let xs: Vec<Array> = (0..3).map(|i| mlx_rs::random::normal::<f32>(&[1, rows, k], None, None, Some(&mlx_rs::random::key(99 + i).unwrap())).unwrap().as_dtype(Dtype::Bfloat16).unwrap()).collect();
            mlx_rs::transforms::eval(xs.iter()).unwrap();
            let mlx = time(&|x, w| ops::matmul(x, &w.transpose().unwrap()).unwrap(), &xs, &ws);
            line += &format!(" | rows={rows} mlx {mlx:.1} ({:.2} TB/s)", bytes / mlx / 1e6);
            if rows > 1 {
                for c in [1, 2, 4] {
                    let t = time(&|x, w| rows_matmul::launch(x, w, c).unwrap(), &xs, &ws);
                    line += &format!(" t{c} {t:.1}");
                }
            }
        }
        println!("{line}");
    }
}
