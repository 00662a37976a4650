//! Load and faults: 500 streams over 8–32 concurrent at a time, with random maxTokens, random
//! return()-style cancellations, random aborts and random deadlines, on a small fixture. No crash,
//! no hang, every stream that was not silently cancelled ends with exactly one terminal chunk,
//! MLX active memory returns to its idle level, and a greedy control request gives identical ids
//! before and after.

mod common;
use common::fixture;

use std::time::Duration;

use mlx_serving_core::generation::Chunk;
use mlx_serving_core::{Engine, EngineConfig, StreamHandle};
use serde_json::{json, Value};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    Finish,
    Return,
    Abort,
    Deadline,
}

/// Drains a stream, applying its fate after `after` token chunks; returns the number of
/// terminal chunks seen (None when it was silently cancelled, as return() does).
async fn drive(mut s: StreamHandle, fate: Fate, after: usize) -> Option<usize> {
    let control = s.control();
    let (mut tokens, mut terminals) = (0usize, 0usize);
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(60), s.next_batch()).await.expect("stream hung");
        if batch.is_empty() {
            break;
        }
        for c in batch {
            match c {
                Chunk::Token { .. } => {
                    assert_eq!(terminals, 0, "token after a terminal chunk");
                    tokens += 1;
                }
                Chunk::Metadata(_) | Chunk::Error(_) => terminals += 1,
            }
        }
        if tokens >= after {
            match fate {
                Fate::Return => {
                    control.cancel(false);
                    drop(s);
                    return None;
                }
                Fate::Abort => control.cancel(true),
                _ => {}
            }
        }
    }
    Some(terminals)
}

async fn control_ids(e: &Engine) -> Vec<u32> {
    let mut s = e.create_stream(&json!({"model": "m", "prompt": "Control prompt for the soak", "maxTokens": 24, "temperature": 0}), &Value::Null).await.unwrap();
    let mut ids = Vec::new();
    loop {
        let b = s.next_batch().await;
        if b.is_empty() {
            break;
        }
        for c in b {
            if let Chunk::Token { token_id, .. } = c {
                ids.push(token_id);
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_500_streams_with_random_cancellations() {
    let e = Engine::with_config(EngineConfig { prompt_cache_max_entries: 0, ..Default::default() });
    e.load_model(&json!({"model": "m", "localPath": fixture("llama")})).await.unwrap();
    let before = control_ids(&e).await;
    mlx_rs::memory::clear_cache().unwrap();
    let idle = mlx_rs::memory::active_memory().unwrap();

    let mut rng = Lcg(42);
    let (mut started, mut done, mut silent) = (0usize, 0usize, 0usize);
    let total = 500;
    while started < total {
        let wave = (8 + rng.next(25) as usize).min(total - started);
        let mut tasks = Vec::new();
        for _ in 0..wave {
            let fate = match rng.next(10) {
                0..=4 => Fate::Finish,
                5 | 6 => Fate::Return,
                7 | 8 => Fate::Abort,
                _ => Fate::Deadline,
            };
            let max_tokens = 1 + rng.next(40);
            let prompt = format!("Soak stream {started} with some words {}", "x ".repeat(rng.next(30) as usize));
            let mut options = json!({});
            if let Fate::Deadline = fate {
                options = json!({"timeoutMs": 1 + rng.next(50)});
            }
            let params = json!({"model": "m", "prompt": prompt, "maxTokens": max_tokens, "temperature": (rng.next(3) as f64) * 0.5, "seed": rng.next(1000)});
            let s = e.create_stream(&params, &options).await.unwrap();
            let after = rng.next(max_tokens + 1) as usize;
            tasks.push(tokio::spawn(drive(s, fate, after)));
            started += 1;
        }
        for t in tasks {
            match t.await.expect("stream task panicked") {
                Some(terminals) => {
                    assert_eq!(terminals, 1, "a stream must end with exactly one terminal chunk");
                    done += 1;
                }
                None => silent += 1,
            }
        }
    }
    assert_eq!(done + silent, total);
    // Silently cancelled streams are dropped at the engine's next step.
    let mut waited = 0;
    while e.active_streams() > 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(e.active_streams(), 0);
    let after = control_ids(&e).await;
    assert_eq!(after, before, "greedy control request changed after the soak");
    tokio::time::sleep(Duration::from_millis(100)).await;
    mlx_rs::memory::clear_cache().unwrap();
    let end = mlx_rs::memory::active_memory().unwrap();
    eprintln!("soak: {total} streams ({done} ended with a terminal chunk, {silent} returned early); MLX active memory idle {idle} B → after {end} B");
    // KV caches are freed: active memory back to the idle level (allow 1 MiB of slack for
    // allocator rounding of small scalars).
    assert!(end <= idle + (1 << 20), "active memory grew from {idle} to {end} bytes");
    e.shutdown().await;
}
