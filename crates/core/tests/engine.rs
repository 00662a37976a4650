//! The engine through its public Rust API, on the seeded random-weight fixtures made by
//! `scripts/models/make_fixtures.py` (npm test prepares them): loading and its failure modes,
//! tokenization, the chunk protocol, determinism, stop conditions, cancellation, shutdown and
//! schedule invariance of concurrent streams.

mod common;
use common::{drain, fixture, run, Run};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlx_serving_core::generation::{Chunk, FinishReason};
use mlx_serving_core::hub::{LoadProgress, ProgressFn};
use mlx_serving_core::{Engine, ErrorCode};
use serde_json::{json, Value};

async fn engine_with(name: &str) -> Engine {
    let e = Engine::new();
    e.load_model(&json!({"model": name, "localPath": fixture(name)})).await.expect("load fixture");
    e
}

fn finish_of(r: &Run) -> (FinishReason, u32) {
    match &r.terminal {
        Chunk::Metadata(s) => (s.finish_reason, s.tokens_generated),
        other => panic!("expected metadata, got {other:?}"),
    }
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog.";

#[tokio::test]
async fn greedy_is_deterministic_and_respects_max_tokens() {
    let e = engine_with("llama").await;
    let p = json!({"model": "llama", "prompt": PROMPT, "maxTokens": 16, "temperature": 0});
    let a = run(&e, p.clone()).await;
    let b = run(&e, p).await;
    assert_eq!(a.ids.len(), 16);
    assert_eq!(a.ids, b.ids);
    assert_eq!(finish_of(&a), (FinishReason::Length, 16));
    e.shutdown().await;
}

#[tokio::test]
async fn seeded_sampling_is_reproducible() {
    let e = engine_with("qwen2").await;
    let p = |seed: u64| json!({"model": "qwen2", "prompt": PROMPT, "maxTokens": 24, "temperature": 1.0, "topP": 0.95, "topK": 50, "seed": seed});
    let a = run(&e, p(7)).await;
    let b = run(&e, p(7)).await;
    let c = run(&e, p(8)).await;
    assert_eq!(a.ids, b.ids, "same seed must give the same ids");
    assert_ne!(a.ids, c.ids, "different seeds should differ on a 24-token sample");
    e.shutdown().await;
}

#[tokio::test]
async fn stop_sequence_cuts_text_and_is_never_yielded() {
    let e = engine_with("mistral").await;
    let base = run(&e, json!({"model": "mistral", "prompt": PROMPT, "maxTokens": 32, "temperature": 0})).await;
    let chars: Vec<char> = base.text.chars().collect();
    assert!(chars.len() > 20, "fixture text too short: {:?}", base.text);
    let start = chars.len() / 2;
    let stop: String = chars[start..start + 3].iter().collect();
    let expect_text: String = base.text[..base.text.find(&stop).unwrap()].to_string();
    let cut = run(&e, json!({"model": "mistral", "prompt": PROMPT, "maxTokens": 32, "temperature": 0, "stopSequences": [stop]})).await;
    assert_eq!(cut.text, expect_text);
    assert!(!cut.text.contains(&stop));
    assert_eq!(finish_of(&cut).0, FinishReason::Stop);
    assert_eq!(finish_of(&cut).1 as usize, cut.ids.len());
    e.shutdown().await;
}

#[tokio::test]
async fn stop_token_id_ends_without_yielding_it() {
    let e = engine_with("qwen3").await;
    let base = run(&e, json!({"model": "qwen3", "prompt": PROMPT, "maxTokens": 12, "temperature": 0})).await;
    let stop_id = base.ids[5];
    let first = base.ids.iter().position(|&t| t == stop_id).unwrap();
    let cut = run(&e, json!({"model": "qwen3", "prompt": PROMPT, "maxTokens": 12, "temperature": 0, "stopTokenIds": [stop_id]})).await;
    assert_eq!(cut.ids, base.ids[..first].to_vec());
    assert_eq!(finish_of(&cut), (FinishReason::Stop, first as u32));
    e.shutdown().await;
}

#[tokio::test]
async fn concurrent_streams_give_the_same_ids_as_alone() {
    let e = engine_with("llama").await;
    let p1 = json!({"model": "llama", "prompt": PROMPT, "maxTokens": 20, "temperature": 0});
    let p2 = json!({"model": "llama", "prompt": "In 1969 astronauts walked on the Moon", "maxTokens": 20, "temperature": 0.8, "seed": 3});
    let alone1 = run(&e, p1.clone()).await;
    let alone2 = run(&e, p2.clone()).await;
    assert_eq!(e.stacked_rows(), 0, "a stream alone is not stacked");
    let s1 = e.create_stream(&p1, &Value::Null).await.unwrap();
    let s2 = e.create_stream(&p2, &Value::Null).await.unwrap();
    let (r1, r2) = tokio::join!(drain(s1), drain(s2));
    assert_eq!(r1.ids, alone1.ids);
    assert_eq!(r2.ids, alone2.ids);
    // The two decode rows ran stacked (one KV buffer per layer, one masked attention).
    assert!(e.stacked_rows() > 0, "concurrent decode rows were not stacked");
    e.shutdown().await;
}

#[tokio::test]
async fn cancel_frees_the_slot_and_ends_the_stream() {
    let e = engine_with("llama").await;
    let mut s = e.create_stream(&json!({"model": "llama", "prompt": PROMPT, "maxTokens": 4000, "temperature": 0}), &Value::Null).await.unwrap();
    assert_eq!(e.active_streams(), 1);
    assert!(!s.next_batch().await.is_empty());
    s.control().cancel(false);
    assert_eq!(e.active_streams(), 0, "slot freed at once");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        while !s.next_batch().await.is_empty() {
            n += 1;
        }
        n
    })
    .await
    .expect("cancelled stream must end promptly");
    assert!(rest < 4000);
    // abort: one Cancelled error chunk
    let s = e.create_stream(&json!({"model": "llama", "prompt": PROMPT, "maxTokens": 4000, "temperature": 0}), &Value::Null).await.unwrap();
    s.control().cancel(true);
    match drain(s).await.terminal {
        Chunk::Error(err) => assert_eq!(err.code, ErrorCode::Cancelled),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // engine still works
    assert_eq!(run(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 3, "temperature": 0})).await.ids.len(), 3);
    e.shutdown().await;
}

#[tokio::test]
async fn timeout_yields_a_timeout_error_chunk() {
    let e = engine_with("llama").await;
    let s = e.create_stream(&json!({"model": "llama", "prompt": PROMPT, "maxTokens": 4000, "temperature": 0}), &json!({"timeoutMs": 1})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    match drain(s).await.terminal {
        Chunk::Error(err) => {
            assert_eq!(err.code, ErrorCode::Timeout);
            assert!(err.message.contains("timed out"));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    e.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_active_streams_and_forgets_models() {
    let e = engine_with("llama").await;
    let s = e.create_stream(&json!({"model": "llama", "prompt": PROMPT, "maxTokens": 4000, "temperature": 0}), &Value::Null).await.unwrap();
    e.shutdown().await;
    match drain(s).await.terminal {
        Chunk::Error(err) => assert_eq!(err.code, ErrorCode::Cancelled),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(e.list_models().is_empty());
    let err = e.tokenize(&json!({"model": "llama", "text": "hi"})).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ModelNotLoaded);
    assert_eq!(err.message, "Model llama must be loaded before tokenization");
}

/// A load that has begun when a shutdown starts fails with RuntimeError; it neither restarts
/// the stopped engine nor leaves its model behind. Deterministic: the load's `load` progress
/// event (sent just before the command goes to the engine thread) holds the load until the
/// shutdown has taken the engine down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_under_way_when_shutdown_starts_fails_and_stays_stopped() {
    let e = Arc::new(engine_with("llama").await);
    let reached = Arc::new(AtomicBool::new(false));
    let progress: ProgressFn = {
        let (e, reached) = (e.clone(), reached.clone());
        Arc::new(move |_: &LoadProgress| {
            reached.store(true, Ordering::Release);
            let t = Instant::now();
            while e.is_running() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_micros(100));
            }
        })
    };
    let load = {
        let e = e.clone();
        tokio::spawn(async move {
            e.load_model_with_progress(&json!({"model": "qwen3", "localPath": fixture("qwen3")}), Some(progress)).await
        })
    };
    while !reached.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    e.shutdown().await;
    let err = load.await.unwrap().expect_err("a load begun before the shutdown must not resolve");
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::RuntimeError, "Engine shutdown in progress"));
    assert!(!e.is_running(), "the load restarted the engine after shutdown");
    assert!(e.list_models().is_empty(), "{:?}", e.list_models());
    // A load called after the shutdown restarts it.
    e.load_model(&json!({"model": "llama", "localPath": fixture("llama")})).await.expect("restart");
    assert_eq!(e.list_models().len(), 1);
    e.shutdown().await;
}

#[tokio::test]
async fn unknown_model_and_invalid_params_fail_before_any_work() {
    let e = Engine::new();
    let err = e.create_stream(&json!({"model": "nope", "prompt": "x"}), &Value::Null).await.err().unwrap();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::ModelNotLoaded, "Model not loaded: nope"));
    let err = e.create_stream(&json!({"model": "nope", "prompt": "x", "maxTokens": 0}), &Value::Null).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    assert_eq!(err.details["field"], json!("maxTokens"));
    e.shutdown().await;
}

fn broken_copy(name: &str, tag: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let src = PathBuf::from(fixture("llama"));
    let dst = std::env::temp_dir().join(format!("mlx-serving-broken-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let _ = name;
    damage(&dst);
    dst
}

#[tokio::test]
async fn load_failures_name_the_cause_and_leave_the_engine_usable() {
    let e = engine_with("llama").await;
    let cases: Vec<(&str, Box<dyn FnOnce(&Path)>, &str)> = vec![
        ("noconfig", Box::new(|d: &Path| std::fs::remove_file(d.join("config.json")).unwrap()), "config.json"),
        ("badconfig", Box::new(|d: &Path| std::fs::write(d.join("config.json"), "{not json").unwrap()), "config.json"),
        ("notok", Box::new(|d: &Path| std::fs::remove_file(d.join("tokenizer.json")).unwrap()), "tokenizer.json"),
        (
            "truncated",
            Box::new(|d: &Path| {
                let f = d.join("model.safetensors");
                let len = std::fs::metadata(&f).unwrap().len();
                let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.set_len(len / 2).unwrap();
            }),
            "model.safetensors",
        ),
        (
            "arch",
            Box::new(|d: &Path| {
                let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
                cfg["model_type"] = json!("mamba");
                std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
            }),
            "mamba",
        ),
    ];
    for (tag, damage, needle) in cases {
        let dir = broken_copy("llama", tag, damage);
        let err = e.load_model(&json!({"model": tag, "localPath": dir.to_string_lossy()})).await.err().unwrap();
        assert_eq!(err.code, ErrorCode::ModelLoadError, "{tag}: {err}");
        assert!(err.message.contains(needle), "{tag}: message {:?} should name {needle}", err.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let missing = e.load_model(&json!({"model": "/definitely/not/here"})).await.err().unwrap();
    assert_eq!(missing.code, ErrorCode::ModelLoadError);
    // still usable, the good model still loaded
    assert_eq!(e.list_models().len(), 1);
    assert_eq!(run(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 2, "temperature": 0})).await.ids.len(), 2);
    e.shutdown().await;
}

#[tokio::test]
async fn tokenize_returns_ids_and_vocab_strings() {
    let e = engine_with("llama").await;
    let r = e.tokenize(&json!({"model": "llama", "text": "Hello world"})).await.unwrap();
    assert!(!r.tokens.is_empty());
    assert_eq!(r.tokens.len(), r.token_strings.len());
    assert!(r.token_strings.iter().any(|s| s.contains("world")), "{:?}", r.token_strings);
    e.shutdown().await;
}

#[tokio::test]
async fn batched_rows_joining_at_different_times_match_their_solo_runs() {
    batched_rows_match_solo("llama").await;
}

/// Gemma 3: sliding-window layers (window 16) with chunked prefill and rotating caches.
#[tokio::test]
async fn gemma3_batched_rows_match_their_solo_runs() {
    batched_rows_match_solo("gemma3").await;
}

async fn batched_rows_match_solo(model: &str) {
    let e = engine_with(model).await;
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(80); // > one prefill chunk
    let params: Vec<Value> = (0..8)
        .map(|i| {
            let prompt = if i == 3 { long_prompt.clone() } else { format!("{PROMPT} Row {i} says {}", "hello ".repeat(i)) };
            let (temp, seed) = if i % 2 == 0 { (0.0, 0) } else { (0.9, 100 + i as u64) };
            json!({"model": model, "prompt": prompt, "maxTokens": 10 + 3 * i, "temperature": temp, "seed": seed, "topK": 40})
        })
        .collect();
    let mut solo = Vec::new();
    for p in &params {
        solo.push(run(&e, p.clone()).await.ids);
    }
    e.reset_batch_stats();
    let mut handles = Vec::new();
    for (i, p) in params.iter().enumerate() {
        if i % 3 == 2 {
            tokio::time::sleep(Duration::from_millis(30)).await; // join while others decode
        }
        let s = e.create_stream(p, &Value::Null).await.unwrap();
        handles.push(tokio::spawn(drain(s)));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await.unwrap();
        assert_eq!(r.ids, solo[i], "row {i} differs when batched");
        assert_eq!(finish_of(&r).0, FinishReason::Length);
    }
    let stats = e.batch_stats();
    assert!(stats["maxBatchSize"].as_u64().unwrap() >= 2, "rows were never batched: {stats}");
    // Rows of different lengths joined and left a stacked batch (llama); gemma3's window-limited
    // caches never stack.
    if model == "llama" {
        assert!(e.stacked_rows() > 0, "decode rows were not stacked");
    } else {
        assert_eq!(e.stacked_rows(), 0, "window-limited caches were stacked");
    }
    assert!(stats["avgBatchSize"].as_f64().unwrap() > 1.0, "{stats}");
    e.shutdown().await;
}

/// Requests made together (as N users at once, or `Promise.all` over N generators) are admitted
/// into one prefill pass, so every step of their generation carries all of them: their rows
/// start decoding together, at equal lengths. (Where the engine handles the first start before
/// the others are sent, the worker's wait for companions is what keeps this true —
/// `engine::worker::tests`; on a fast machine the starts often all arrive first anyway.)
#[tokio::test]
async fn streams_started_together_share_every_step() {
    let e = engine_with("llama").await;
    let params: Vec<Value> = (0..6).map(|i| json!({"model": "llama", "prompt": format!("{PROMPT} Row {i}."), "maxTokens": 5, "temperature": 0})).collect();
    let solo: Vec<Vec<u32>> = {
        let mut v = Vec::new();
        for p in &params {
            v.push(run(&e, p.clone()).await.ids);
        }
        v
    };
    e.reset_batch_stats();
    let starts = futures_util::future::join_all(params.iter().map(|p| e.create_stream(p, &Value::Null))).await;
    let handles: Vec<_> = starts.into_iter().map(|s| tokio::spawn(drain(s.unwrap()))).collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().ids, solo[i], "row {i}");
    }
    let stats = e.batch_stats();
    assert_eq!(stats["maxBatchSize"].as_u64(), Some(6), "{stats}");
    assert_eq!(stats["avgBatchSize"].as_f64(), Some(6.0), "a step ran without every row: {stats}");
    e.shutdown().await;
}

#[tokio::test]
async fn streams_of_different_models_batch_side_by_side() {
    let e = engine_with("llama").await;
    e.load_model(&json!({"model": "qwen3", "localPath": fixture("qwen3")})).await.unwrap();
    let pa = json!({"model": "llama", "prompt": PROMPT, "maxTokens": 12, "temperature": 0});
    let pb = json!({"model": "qwen3", "prompt": PROMPT, "maxTokens": 12, "temperature": 0});
    let (a, b) = (run(&e, pa.clone()).await.ids, run(&e, pb.clone()).await.ids);
    let sa = e.create_stream(&pa, &Value::Null).await.unwrap();
    let sb = e.create_stream(&pb, &Value::Null).await.unwrap();
    let (ra, rb) = tokio::join!(drain(sa), drain(sb));
    assert_eq!((ra.ids, rb.ids), (a, b));
    e.shutdown().await;
}

#[tokio::test]
async fn prompt_prefix_reuse_keeps_outputs_and_stays_bounded() {
    let e = engine_with("llama").await;
    let system = "You are a helpful assistant. Answer briefly and precisely. ".repeat(4);
    let turn1 = format!("{system} User: hello");
    let p1 = json!({"model": "llama", "prompt": turn1, "maxTokens": 8, "temperature": 0});
    let first = run(&e, p1.clone()).await;
    // The engine thread stores a finished stream's KV state right after its last chunk is sent.
    for _ in 0..200 {
        if e.cache_stats()["promptCache"]["entries"] == json!(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = e.cache_stats()["promptCache"].clone();
    assert_eq!(stats["entries"], json!(1), "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    // Same prompt again: served from the cache, same ids.
    let again = run(&e, p1).await;
    assert_eq!(again.ids, first.ids);
    // A second turn extending the first conversation reuses the prefix; compare with a cold run.
    let turn2 = format!("{turn1}{} User: and then?", first.text);
    let p2 = json!({"model": "llama", "prompt": turn2, "maxTokens": 8, "temperature": 0});
    let warm = run(&e, p2.clone()).await;
    let hits = e.cache_stats()["promptCache"]["hits"].as_u64().unwrap();
    assert!(hits >= 2, "expected cache hits, stats: {}", e.cache_stats()["promptCache"]);
    let cold_engine = Engine::with_config(mlx_serving_core::EngineConfig { prompt_cache_max_entries: 0, ..Default::default() });
    cold_engine.load_model(&json!({"model": "llama", "localPath": fixture("llama")})).await.unwrap();
    let cold = run(&cold_engine, p2).await;
    assert_eq!(warm.ids, cold.ids, "prefix reuse changed the output");
    assert_eq!(cold_engine.cache_stats()["promptCache"]["entries"], json!(0));
    cold_engine.shutdown().await;
    e.shutdown().await;

    // Bounded: a byte budget below two entries keeps at most one, counting evictions.
    let small = Engine::with_config(mlx_serving_core::EngineConfig { prompt_cache_max_entries: 100, prompt_cache_max_bytes: 200_000, ..Default::default() });
    small.load_model(&json!({"model": "llama", "localPath": fixture("llama")})).await.unwrap();
    for i in 0..4 {
        run(&small, json!({"model": "llama", "prompt": format!("Prompt number {i} is here"), "maxTokens": 4, "temperature": 0})).await;
    }
    let s = small.cache_stats()["promptCache"].clone();
    assert!(s["bytes"].as_u64().unwrap() <= 200_000, "{s}");
    assert!(s["evictions"].as_u64().unwrap() >= 1, "{s}");
    small.shutdown().await;
}

/// Pipelined decode: a plain greedy stream feeds each sample to the next step before the host
/// reads it (every decode step after the first), while a request whose next step depends on the
/// sampled id on the host (penalties here) decodes step by step — with the same ids as ever.
#[tokio::test]
async fn plain_rows_pipeline_and_penalty_rows_do_not() {
    let e = engine_with("llama").await;
    e.reset_batch_stats();
    let a = run(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 16, "temperature": 0})).await;
    assert_eq!(a.ids.len(), 16);
    // 16 samples: the first comes from prefill; the 1st..15th are each fed lazily to the step
    // that computes the next one; the 16th (the last by maxTokens) is read at once, never fed.
    assert_eq!(e.pipelined_rows(), 15);
    e.reset_batch_stats();
    let b = run(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 16, "temperature": 0, "repetitionPenalty": 1.3})).await;
    assert_eq!(b.ids.len(), 16);
    assert_eq!(e.pipelined_rows(), 0);
    e.shutdown().await;
}
