//! Measures the two ways `models/moe.rs` runs the experts (`gather`: MLX gather_mm over
//! token–expert pairs; `sorted`: host-grouped rows, one matmul per used expert) on one synthetic
//! MoE layer of realistic width with random weights, for decode-sized (1 and 4 tokens) and
//! prefill-sized (128 and 512 tokens) inputs, and checks both give the same output. Prints one
//! JSON object per (shape, tokens). Run:
//!
//!   cargo run --release -p mlx-serving-core --example moe_kernels [-- --runs 5 --tokens 1,4,128,512]

use std::collections::HashMap;
use std::time::Instant;

use mlx_rs::{ops, random, Array};
use mlx_serving_core::models::moe::{MoeBlock, MoeKernel, Routing};
use mlx_serving_core::models::weights::WeightMap;
use serde_json::json;

struct Shape {
    name: &'static str,
    hidden: i32,
    inter: i32,
    experts: i32,
    top_k: i32,
}

const SHAPES: &[Shape] = &[
    // Qwen3-30B-A3B's routing (128 experts, top-8) at half its width.
    Shape { name: "qwen3-moe-like", hidden: 1024, inter: 384, experts: 128, top_k: 8 },
    // Mixtral's routing (8 experts, top-2) at a quarter of its width.
    Shape { name: "mixtral-like", hidden: 1024, inter: 3584, experts: 8, top_k: 2 },
];

fn weights(s: &Shape) -> WeightMap {
    let n = |shape: &[i32], std: f32| ops::multiply(&random::normal::<f32>(shape, None, None, None).unwrap(), &Array::from_f32(std)).unwrap();
    let mut m = HashMap::new();
    m.insert("moe.gate.weight".to_owned(), n(&[s.experts, s.hidden], 0.5));
    m.insert("moe.switch_mlp.gate_proj.weight".to_owned(), n(&[s.experts, s.inter, s.hidden], 0.03));
    m.insert("moe.switch_mlp.up_proj.weight".to_owned(), n(&[s.experts, s.inter, s.hidden], 0.03));
    m.insert("moe.switch_mlp.down_proj.weight".to_owned(), n(&[s.experts, s.hidden, s.inter], 0.03));
    let w = WeightMap::from_map(m);
    let all: Vec<Array> = w.names().filter_map(|k| w.get(k).cloned()).collect();
    mlx_rs::transforms::eval(all.iter()).unwrap();
    w
}

fn median_ms(block: &MoeBlock, x: &Array, runs: usize) -> (f64, Array) {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..runs + 1 {
        let t = Instant::now();
        let y = block.forward(x).unwrap();
        y.eval().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        out = Some(y);
    }
    times.remove(0); // warm-up
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[times.len() / 2], out.unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let runs = opt("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let token_counts: Vec<i32> = opt("--tokens").unwrap_or_else(|| "1,4,128,512".into()).split(',').map(|t| t.parse().expect("--tokens")).collect();
    mlx_rs::random::seed(7).unwrap();
    for s in SHAPES {
        let w = weights(s);
        let load = |k| MoeBlock::load(&w, "moe.gate", "moe.switch_mlp", None, s.experts, s.top_k, Routing::SoftmaxTopK { norm_topk_prob: true }, k).unwrap();
        let (gather, sorted) = (load(MoeKernel::Gather), load(MoeKernel::Sorted));
        for &tokens in &token_counts {
            let x = random::normal::<f32>(&[1, tokens, s.hidden], None, None, None).unwrap();
            x.eval().unwrap();
            let (tg, yg) = median_ms(&gather, &x, runs);
            let (ts, ys) = median_ms(&sorted, &x, runs);
            let diff = ops::max(&ops::abs(&ops::subtract(&yg, &ys).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
            println!(
                "{}",
                json!({"shape": s.name, "hidden": s.hidden, "inter": s.inter, "experts": s.experts, "top_k": s.top_k,
                       "tokens": tokens, "gather_ms": tg, "sorted_ms": ts, "gather_over_sorted": tg / ts, "max_abs_diff": diff})
            );
        }
    }
}
