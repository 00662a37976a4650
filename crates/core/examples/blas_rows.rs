//! Microbenchmark of the `cblas_sgemm` MLX's CPU matmul calls (services/blas_rows.rs) on the
//! weight products of a SmolLM2-135M decode step, 1–16 activation rows: what one stacked decode
//! step pays per matrix. The path is chosen by the environment, read once per process, so run it
//! once per configuration:
//!
//!   cargo run --release -p mlx-serving-core --example blas_rows                      # default
//!   MLX_SERVING_SMALL_GEMM=0 cargo run --release -p mlx-serving-core --example blas_rows  # GEMV ≤ 8 rows, else GEMM
//!   MLX_SERVING_GEMV=0 cargo run --release -p mlx-serving-core --example blas_rows        # the BLAS's GEMM only
//!
//! Weights rotate through ≥ 600 MB of copies so each call reads them from memory, as a decode
//! step does. Prints the median µs per call of 15 for each (matrix, rows).

use std::time::Instant;

use mlx_serving_core::services::blas_rows::{cblas_sgemm, small_kernel, forwarding};

const SHAPES: &[(&str, usize, usize)] = &[
    ("q/k/v fused 960x576", 960, 576),
    ("o_proj 576x576", 576, 576),
    ("gate/up fused 3072x576", 3072, 576),
    ("down 576x1536", 576, 1536),
    ("lm_head 49152x576", 49152, 576),
];

fn main() {
    println!("small_gemm kernel: {}, GEMV forwarding: {}", small_kernel(), forwarding());
    let rows = [1usize, 2, 4, 8, 16];
    print!("{:<24}", "matrix \\ rows");
    for m in rows {
        print!("{m:>10}");
    }
    println!();
    for &(name, n, k) in SHAPES {
        let copies = (600usize << 20).div_ceil(n * k * 4).max(2);
        let weights: Vec<Vec<f32>> = (0..copies).map(|c| (0..n * k).map(|i| ((i * 7 + c) % 13) as f32 * 0.01).collect()).collect();
        let a: Vec<f32> = (0..16 * k).map(|i| (i % 11) as f32 * 0.1).collect();
        let mut c = vec![0f32; 16 * n];
        print!("{name:<24}");
        for m in rows {
            let mut times = Vec::new();
            for it in 0..15 {
                let w = &weights[it % copies];
                let t = Instant::now();
                unsafe {
                    // RowMajor, A no-trans, B transposed: activations times a weight matrix [n, k].
                    cblas_sgemm(101, 111, 112, m as i32, n as i32, k as i32, 1.0, a.as_ptr(), k as i32, w.as_ptr(), k as i32, 0.0, c.as_mut_ptr(), n as i32);
                }
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(|x, y| x.total_cmp(y));
            print!("{:>10.0}", times[times.len() / 2]);
        }
        println!();
    }
}
