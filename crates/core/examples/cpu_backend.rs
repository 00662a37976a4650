//! Our side of bench/cpu_backend.py (DESIGN.md decision 8): prefill, decode and chat TTFT of one
//! model folder on this machine, printed as one JSON object. Run by the driver; standalone:
//!
//!   cargo run --release -p mlx-serving-core --example cpu_backend -- \
//!       --model DIR --ids ids.json [--compute auto|float32|as-stored] [--runs 3] [--decode 128] \
//!       [--chat "message"]
//!
//! ids.json: {"prefill": [512 ids], "decode_prompt": [ids]}. Prefill: one forward pass over the
//! prompt (fresh cache, logits of the last position) until evaluated. Decode: after prefilling
//! `decode_prompt`, N greedy steps (forward + argmax + read back, EOS ignored), what the engine's
//! stream step does. TTFT: `Engine::create_stream` with the chat message (template, tokenization,
//! prefill, first sampled token) until the first token chunk arrives.

use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::Array;
use mlx_serving_core::generation::Chunk;
use mlx_serving_core::models::{load_language_model_with, ComputeDtype, CausalModel};
use mlx_serving_core::services::runtime_info;
use mlx_serving_core::Engine;
use serde_json::{json, Value};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn step(model: &CausalModel, cache: &mut [mlx_serving_core::generation::kv_cache::KvCache], ids: &[i32]) -> i32 {
    let x = Array::from_slice(ids, &[1, ids.len() as i32]);
    let logits = model.forward(&x, cache, true).expect("forward");
    argmax_axis(&logits.reshape(&[-1]).unwrap(), -1, None).unwrap().item_cast::<i32>()
}

fn prefill_s(model: &CausalModel, ids: &[i32]) -> f64 {
    let mut cache = model.new_cache();
    let t = Instant::now();
    step(model, &mut cache, ids);
    t.elapsed().as_secs_f64()
}

fn decode_s(model: &CausalModel, prompt: &[i32], n: usize) -> f64 {
    let mut cache = model.new_cache();
    let mut tok = step(model, &mut cache, prompt);
    let t = Instant::now();
    for _ in 0..n {
        tok = step(model, &mut cache, &[tok]);
    }
    t.elapsed().as_secs_f64()
}

async fn ttft_s(engine: &Engine, id: &str, msg: &str) -> f64 {
    let params = json!({"model": id, "prompt": {"messages": [{"role": "user", "content": msg}]}, "maxTokens": 2, "temperature": 0});
    let t = Instant::now();
    let mut s = engine.create_stream(&params, &Value::Null).await.expect("stream");
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(600), s.next_batch()).await.expect("stalled");
        if batch.is_empty() || batch.iter().any(|c| matches!(c, Chunk::Token { .. })) {
            let dt = t.elapsed().as_secs_f64();
            s.control().cancel(false);
            return dt;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = arg(&args, "--model").expect("--model DIR");
    let compute = ComputeDtype::parse(&arg(&args, "--compute").unwrap_or("auto".into())).expect("--compute");
    let runs: usize = arg(&args, "--runs").map_or(3, |s| s.parse().unwrap());
    let n_decode: usize = arg(&args, "--decode").map_or(128, |s| s.parse().unwrap());
    let ids: Value = serde_json::from_str(&std::fs::read_to_string(arg(&args, "--ids").expect("--ids FILE")).unwrap()).unwrap();
    let to_vec = |v: &Value| -> Vec<i32> { v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect() };
    let (prefill_ids, decode_prompt) = (to_vec(&ids["prefill"]), to_vec(&ids["decode_prompt"]));

    let t = Instant::now();
    let (model, stats) = load_language_model_with(dir.as_ref(), compute).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    // Warm-up (first-call kernel setup), not timed.
    prefill_s(&model, &prefill_ids[..16]);
    let prefill: Vec<f64> = (0..runs).map(|_| prefill_ids.len() as f64 / prefill_s(&model, &prefill_ids)).collect();
    let decode: Vec<f64> = (0..runs).map(|_| n_decode as f64 / decode_s(&model, &decode_prompt, n_decode)).collect();
    drop(model);

    let mut ttft = Vec::new();
    if let Some(msg) = arg(&args, "--chat") {
        let engine = Engine::new();
        let opts = json!({"model": "bench", "localPath": dir, "computeDtype": arg(&args, "--compute").unwrap_or("auto".into())});
        engine.load_model(&opts).await.expect("engine load");
        ttft_s(&engine, "bench", &msg).await; // warm-up
        for _ in 0..runs {
            ttft.push(ttft_s(&engine, "bench", &msg).await);
        }
        engine.shutdown().await;
    }
    let info = runtime_info::runtime_info(env!("CARGO_PKG_VERSION"));
    let out = json!({
        "impl": "mlx-serving",
        "model": dir,
        "compute": format!("{compute:?}"),
        "dtype": stats.dtype, "storedDtype": stats.stored_dtype, "dequantized": stats.dequantized,
        "memoryBytes": stats.memory_bytes, "loadSeconds": load_s,
        "blas": info["backend"]["blas"], "blasThreads": info["backend"]["blasThreads"],
        "prefillTokens": prefill_ids.len(), "decodeTokens": n_decode,
        "prefill_tok_s": prefill, "decode_tok_s": decode, "ttft_s": ttft,
    });
    println!("{out}");
}
