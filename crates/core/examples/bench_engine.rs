//! Throughput benchmark of the Rust engine core (no Node): single-stream prefill/decode/TTFT and
//! aggregate tok/s with N concurrent streams (continuous batching), on token-id prompts shared
//! with the mlx-lm side of `bench/run.mjs`. Greedy, EOS ignored, prompt cache off.
//!
//! usage: bench_engine <model_dir> <prompts.json> <gen_tokens> <concurrency,...>
//! prompts.json: {"long": [ids], "chat": [ids], "batch": [[ids], ...]}
//! Prints one JSON object on stdout.

use std::time::Instant;

use futures_util::future::join_all;

use mlx_serving_core::{Engine, EngineConfig, StreamHandle};
use serde_json::{json, Value};

#[path = "common/bench.rs"]
mod bench;
use bench::{peak_rss_bytes, timed, Timing};

fn params(ids: &Value, max_tokens: u64) -> Value {
    json!({"model": "bench", "prompt": {"tokens": ids}, "maxTokens": max_tokens, "temperature": 0, "ignoreEos": true})
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, prompts_path, gen) = (&args[1], &args[2], args[3].parse::<u64>().unwrap());
    let concurrency: Vec<usize> = args[4].split(',').map(|n| n.parse().unwrap()).collect();
    let prompts: Value = serde_json::from_str(&std::fs::read_to_string(prompts_path).unwrap()).unwrap();
    let engine = Engine::with_config(EngineConfig { prompt_cache_max_entries: 0, ..Default::default() });
    let t = Instant::now();
    engine.load_model(&json!({"model": "bench", "localPath": dir})).await.expect("load");
    let load_s = t.elapsed().as_secs_f64();
    // warm-up (first-use allocations, kernels)
    timed(engine.create_stream(&params(&prompts["chat"], 2), &Value::Null).await.unwrap(), Instant::now()).await;

    // The long-prompt stream BENCH_DECODE_REPEAT times (default 1) in this process, medians
    // reported: on hosts whose speed drifts between processes, repeats in one process (the
    // mlx-lm side does the same) make a pair of figures comparable.
    let repeat: usize = std::env::var("BENCH_DECODE_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let prompt_len = prompts["long"].as_array().unwrap().len() as f64;
    let (mut prefills, mut decodes, mut ttfts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        let start = Instant::now();
        let long = timed(engine.create_stream(&params(&prompts["long"], gen), &Value::Null).await.unwrap(), start).await;
        prefills.push(prompt_len / long.ttft);
        decodes.push((long.tokens as f64 - 1.0) / (long.total - long.ttft));
        ttfts.push(long.ttft);
    }
    let start = Instant::now();
    let chat = timed(engine.create_stream(&params(&prompts["chat"], 1), &Value::Null).await.unwrap(), start).await;

    let mut aggregate = serde_json::Map::new();
    // when the last of the N streams got its first token (admission and prefill of them all)
    let mut last_first_token = serde_json::Map::new();
    let batch = prompts["batch"].as_array().unwrap();
    // warm-up of the batched path (first-use kernels of stacked decode), as bench/mlx_lm_bench.py
    // does for its BatchGenerator: the largest concurrency, a few tokens each
    let widest = concurrency.iter().copied().max().unwrap_or(1);
    futures_join(start_all(&engine, batch, widest, 4).await, Instant::now()).await;
    // Sanity check of the batched path on this device: the first batch prompt alone, then its
    // ids from the widest concurrent run are compared (leading ids that agree; bf16 kernels for
    // 16 rows may round differently from 1 row, so a late divergence is not by itself a bug,
    // an early one is).
    let solo = timed(engine.create_stream(&params(&batch[0], gen), &Value::Null).await.unwrap(), Instant::now()).await;
    let mut agree = Value::Null;
    for &n in &concurrency {
        // All N requests are made at once (as N concurrent users would, and as mlx-lm's side
        // inserts its N prompts): awaiting each start in turn would let them join one per step.
        let start = Instant::now();
        let timings = futures_join(start_all(&engine, batch, n, gen).await, start).await;
        if n == widest {
            agree = json!(solo.ids.iter().zip(&timings[0].ids).take_while(|(a, b)| a == b).count());
        }
        let wall = timings.iter().map(|t| t.total).fold(0.0, f64::max);
        let tokens: usize = timings.iter().map(|t| t.tokens).sum();
        aggregate.insert(n.to_string(), json!(tokens as f64 / wall));
        last_first_token.insert(n.to_string(), json!(timings.iter().map(|t| t.ttft).fold(0.0, f64::max)));
    }
    let out = json!({
        "engine": "mlx-serving (Rust core)",
        "load_s": load_s,
        "prefill_tps": median(&prefills),
        "decode_tps": median(&decodes),
        "ttft_long_s": median(&ttfts),
        "decode_tps_runs": decodes,
        "ttft_chat_s": chat.ttft,
        "aggregate_tps": aggregate,
        "aggregate_last_ttft_s": last_first_token,
        "peak_rss_bytes": peak_rss_bytes(),
        "batched_ids_agreeing_with_solo": agree,
        // the solo stream's first ids, to compare builds or settings on the same model
        "solo_ids_head": solo.ids.iter().take(24).collect::<Vec<_>>(),
    });
    println!("{out}");
    engine.shutdown().await;
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Requests `n` streams over the batch prompts (cycled) at once, not one after another.
async fn start_all(engine: &Engine, batch: &[Value], n: usize, max_tokens: u64) -> Vec<StreamHandle> {
    let ps: Vec<Value> = (0..n).map(|i| params(&batch[i % batch.len()], max_tokens)).collect();
    join_all(ps.iter().map(|p| engine.create_stream(p, &Value::Null))).await.into_iter().map(Result::unwrap).collect()
}

async fn futures_join(handles: Vec<StreamHandle>, start: Instant) -> Vec<Timing> {
    let tasks: Vec<_> = handles.into_iter().map(|h| tokio::spawn(timed(h, start))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
