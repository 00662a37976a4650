//! Speculative decoding (spec §7.8 / §15, issue 5) through the engine's public Rust API:
//! greedy output identical to plain decoding (several fixtures, proposal lengths, stop
//! sequences, stop ids, EOS and maxTokens), the statistical check at temperature > 0 on a
//! 32-token-vocabulary fixture, mixing with batched plain rows, stats, and the failure modes
//! (draft not loaded, vocabulary mismatch, draft unloaded mid-stream, cancel/abort).
//!
//! Needs the llama-family fixtures of `.cache/fixtures` (npm test makes them) and the tiny
//! fixtures of `scripts/spec/make_spec_fixtures.py` (in `.cache-spec/`, or `MLX_SPEC_FIXTURES`).

mod common;
use common::{drain, fixture, run, Run};

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlx_serving_core::generation::{Chunk, FinishReason, GenerationStats};
use mlx_serving_core::{Engine, ErrorCode};
use serde_json::{json, Value};

fn spec_fixture(name: &str) -> String {
    let base = std::env::var("MLX_SPEC_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache-spec"));
    let p = base.join(name);
    assert!(p.join("config.json").is_file(), "fixture {name} missing: run .venv/bin/python scripts/spec/make_spec_fixtures.py");
    p.canonicalize().unwrap().to_string_lossy().into_owned()
}

async fn load(e: &Engine, id: &str, path: &str) {
    e.load_model(&json!({"model": id, "localPath": path})).await.expect("load fixture");
}

fn stats(r: &Run) -> &GenerationStats {
    match &r.terminal {
        Chunk::Metadata(s) => s,
        other => panic!("expected metadata, got {other:?}"),
    }
}

fn with(p: &Value, extra: Value) -> Value {
    let mut p = p.clone();
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

const PROMPTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "In 1969 astronauts walked on the Moon, and",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
];

/// Plain vs speculative greedy runs of `params`: identical ids, text and finish.
async fn assert_lossless(e: &Engine, params: &Value, draft: &str, k: u32) -> GenerationStats {
    let plain = run(e, params.clone()).await;
    let spec = run(e, with(params, json!({"draftModel": draft, "numDraftTokens": k}))).await;
    assert_eq!(spec.ids, plain.ids, "ids differ (draft {draft}, k {k}, {params})");
    assert_eq!(spec.text, plain.text);
    let (a, b) = (stats(&plain), stats(&spec));
    assert_eq!((a.finish_reason, a.tokens_generated), (b.finish_reason, b.tokens_generated));
    assert!(a.draft_tokens_accepted.is_none() && a.acceptance_rate.is_none(), "no draft, no draft stats");
    b.clone()
}

#[tokio::test]
async fn greedy_speculative_output_is_identical_to_plain_decoding() {
    let e = Engine::new();
    for (id, dir) in [("llama", fixture("llama")), ("qwen2", fixture("qwen2")), ("mistral", fixture("mistral")), ("llama-4bit", fixture("llama-4bit"))] {
        load(&e, id, &dir).await;
    }
    // (target, draft): a weak unrelated draft (mostly rejections), a quantized copy (mostly
    // accepted), the target itself (everything accepted).
    let pairs = [("llama", "qwen2"), ("llama", "llama-4bit"), ("mistral", "mistral"), ("qwen2", "llama")];
    let mut rates = Vec::new();
    for (target, draft) in pairs {
        for (pi, prompt) in PROMPTS.iter().enumerate() {
            for (k, max) in [(1, 9), (3, 17), (4, 1), (5, 2), (7, 23), (16, 30)] {
                let p = json!({"model": target, "prompt": prompt, "maxTokens": max, "temperature": 0});
                let s = assert_lossless(&e, &p, draft, k).await;
                if pi == 0 && k == 4 {
                    continue;
                }
                let proposed = s.draft_tokens_proposed.unwrap();
                assert!(s.draft_tokens_accepted.unwrap() <= proposed);
                if max > 2 {
                    assert!(proposed > 0, "{target}/{draft} k {k}: nothing proposed");
                    rates.push((target, draft, s.acceptance_rate.unwrap()));
                } else {
                    assert_eq!(s.acceptance_rate, Some(0.0), "nothing proposed → rate 0");
                }
            }
        }
    }
    let mean = |t: &str, d: &str| {
        let v: Vec<f64> = rates.iter().filter(|r| r.0 == t && r.1 == d).map(|r| r.2).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean("mistral", "mistral") > 0.95, "a draft equal to the target should be accepted: {rates:?}");
    assert!(mean("llama", "qwen2") < 0.5, "an unrelated draft should be mostly rejected: {rates:?}");
    e.shutdown().await;
}

#[tokio::test]
async fn stops_land_mid_proposal_exactly_where_plain_decoding_stops() {
    let e = Engine::new();
    load(&e, "llama", &fixture("llama")).await;
    load(&e, "draft", &fixture("llama-4bit")).await;
    let base_p = json!({"model": "llama", "prompt": PROMPTS[0], "maxTokens": 32, "temperature": 0});
    let base = run(&e, base_p.clone()).await;
    let chars: Vec<char> = base.text.chars().collect();
    assert!(chars.len() > 20, "fixture text too short: {:?}", base.text);
    for k in [2, 4, 6] {
        // stop sequences at several places (held-back text, cut inside a token)
        for at in [chars.len() / 3, chars.len() / 2, chars.len() - 4] {
            let stop: String = chars[at..at + 3].iter().collect();
            let s = assert_lossless(&e, &with(&base_p, json!({"stopSequences": [stop]})), "draft", k).await;
            assert_eq!(s.finish_reason, FinishReason::Stop);
        }
        // stop token ids
        for at in [3, 7, 11] {
            let s = assert_lossless(&e, &with(&base_p, json!({"stopTokenIds": [base.ids[at]]})), "draft", k).await;
            assert_eq!(s.finish_reason, FinishReason::Stop);
        }
        // every maxTokens from 1 to 12
        for max in 1..=12 {
            assert_lossless(&e, &with(&base_p, json!({"maxTokens": max})), "draft", k).await;
        }
    }
    // EOS: a copy of the target whose EOS id is a token it generates at position 9
    let eos_dir = std::env::temp_dir().join(format!("mlx-serving-spec-eos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&eos_dir);
    std::fs::create_dir_all(&eos_dir).unwrap();
    for entry in std::fs::read_dir(fixture("llama")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, eos_dir.join(p.file_name().unwrap())).unwrap();
    }
    let cfg_path = eos_dir.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["eos_token_id"] = json!(base.ids[9]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    load(&e, "llama-eos", &eos_dir.to_string_lossy()).await;
    let first = base.ids.iter().position(|&t| t == base.ids[9]).unwrap();
    for k in [3, 8] {
        let p = with(&base_p, json!({"model": "llama-eos"}));
        let s = assert_lossless(&e, &p, "draft", k).await;
        assert_eq!((s.finish_reason, s.tokens_generated), (FinishReason::Eos, first as u32));
    }
    std::fs::remove_dir_all(&eos_dir).unwrap();
    e.shutdown().await;
}

#[tokio::test]
async fn speculative_and_plain_rows_batch_side_by_side_with_solo_ids() {
    let e = Engine::new();
    load(&e, "llama", &fixture("llama")).await;
    load(&e, "draft", &fixture("llama-4bit")).await;
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(60); // chunked prefill
    let params: Vec<Value> = (0..6)
        .map(|i| {
            let prompt = if i == 2 { long_prompt.clone() } else { format!("{} row {i}", PROMPTS[i % 3]) };
            let mut p = json!({"model": "llama", "prompt": prompt, "maxTokens": 12 + 2 * i, "temperature": if i == 4 { 0.8 } else { 0.0 }, "seed": 9});
            if i % 2 == 0 {
                p["draftModel"] = json!("draft");
                p["numDraftTokens"] = json!(3);
            }
            p
        })
        .collect();
    let mut solo = Vec::new();
    for p in &params {
        solo.push(run(&e, p.clone()).await.ids);
    }
    e.reset_batch_stats();
    let mut handles = Vec::new();
    for p in &params {
        let s = e.create_stream(p, &Value::Null).await.unwrap();
        handles.push(tokio::spawn(drain(s)));
    }
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.await.unwrap();
        assert_eq!(r.ids, solo[i], "row {i} differs when batched");
        assert_eq!(stats(&r).draft_tokens_proposed.is_some(), i % 2 == 0);
    }
    assert!(e.batch_stats()["maxBatchSize"].as_u64().unwrap() >= 2);
    // greedy speculative rows still equal plain greedy
    let plain = run(&e, json!({"model": "llama", "prompt": format!("{} row 0", PROMPTS[0]), "maxTokens": 12, "temperature": 0})).await;
    assert_eq!(plain.ids, solo[0]);
    e.shutdown().await;
}

#[tokio::test]
async fn seeded_speculative_sampling_is_reproducible() {
    let e = Engine::new();
    load(&e, "llama", &fixture("llama")).await;
    load(&e, "draft", &fixture("llama-4bit")).await;
    let p = |seed: u64| json!({"model": "llama", "prompt": PROMPTS[1], "maxTokens": 24, "temperature": 0.9, "topP": 0.95, "seed": seed, "draftModel": "draft"});
    let (a, b, c) = (run(&e, p(5)).await, run(&e, p(5)).await, run(&e, p(6)).await);
    assert_eq!(a.ids, b.ids, "same seed must give the same ids");
    assert_ne!(a.ids, c.ids);
    let s = stats(&a);
    assert_eq!(s.tokens_generated, 24);
    assert!(s.draft_tokens_proposed.unwrap() > 0);
    e.shutdown().await;
}

/// Token-by-position counts over `n` seeded runs of `params` (seeds 0..n), for positions 0..len.
async fn sample_counts(e: &Engine, params: &Value, n: u64, len: usize, vocab: usize) -> (Vec<Vec<u64>>, u64, u64) {
    let mut counts = vec![vec![0u64; vocab]; len];
    let (mut acc, mut prop) = (0, 0);
    let mut seed = 0;
    while seed < n {
        let mut handles = Vec::new();
        for s in seed..(seed + 64).min(n) {
            handles.push(e.create_stream(&with(params, json!({"seed": s})), &Value::Null).await.unwrap());
        }
        seed = (seed + 64).min(n);
        for h in handles {
            let r = drain(h).await;
            assert_eq!(r.ids.len(), len, "{:?}", r.terminal);
            for (i, &t) in r.ids.iter().enumerate() {
                counts[i][t as usize] += 1;
            }
            let st = stats(&r);
            acc += st.draft_tokens_accepted.unwrap_or(0);
            prop += st.draft_tokens_proposed.unwrap_or(0);
        }
    }
    (counts, acc, prop)
}

/// Two-sample chi-square statistic (equal sample sizes) and its degrees of freedom, over the
/// categories seen at least 5 times in total.
fn chi2(a: &[u64], b: &[u64]) -> (f64, usize) {
    let mut stat = 0.0;
    let mut cats: usize = 0;
    for (&x, &y) in a.iter().zip(b) {
        if x + y >= 5 {
            stat += (x as f64 - y as f64).powi(2) / (x + y) as f64;
            cats += 1;
        }
    }
    (stat, cats.saturating_sub(1))
}

/// Upper critical value of chi-square at p ≈ 1e-4 (Wilson–Hilferty).
fn chi2_crit(df: usize) -> f64 {
    let d = df as f64;
    let z = 3.719;
    d * (1.0 - 2.0 / (9.0 * d) + z * (2.0 / (9.0 * d)).sqrt()).powi(3)
}

#[tokio::test]
async fn temperature_sampling_keeps_the_target_distribution() {
    let e = Engine::new();
    load(&e, "target", &spec_fixture("tiny-target")).await;
    load(&e, "draft", &spec_fixture("tiny-draft")).await;
    const N: u64 = 1500;
    const LEN: usize = 5;
    const VOCAB: usize = 32;
    for extra in [json!({"temperature": 1.0}), json!({"temperature": 0.8, "topK": 12, "topP": 0.9})] {
        let base = with(&json!({"model": "target", "prompt": {"tokens": [0, 5, 9, 13]}, "maxTokens": LEN}), extra.clone());
        let (plain, _, _) = sample_counts(&e, &base, N, LEN, VOCAB).await;
        let spec_p = with(&base, json!({"draftModel": "draft", "numDraftTokens": 3}));
        let (spec, acc, prop) = sample_counts(&e, &spec_p, N, LEN, VOCAB).await;
        let rate = acc as f64 / prop as f64;
        eprintln!("{extra}: acceptance {rate:.3}");
        assert!(rate > 0.1 && rate < 0.95, "the test needs both acceptances and rejections: rate {rate}");
        // position 0 is sampled by the prefill pass in both modes; positions 1.. by rounds
        for pos in 1..LEN {
            let (stat, df) = chi2(&plain[pos], &spec[pos]);
            assert!(df >= 5, "too few categories at position {pos}");
            assert!(stat < chi2_crit(df), "{extra}: position {pos}: chi2 {stat:.1} ≥ {:.1} (df {df})", chi2_crit(df));
        }
        // power check: the draft's own distribution is told apart by the same statistic
        if extra["temperature"] == 1.0 {
            let (draft_only, _, _) = sample_counts(&e, &with(&base, json!({"model": "draft"})), N, LEN, VOCAB).await;
            let worst = (1..LEN).map(|pos| chi2(&plain[pos], &draft_only[pos])).map(|(s, df)| s / chi2_crit(df)).fold(0.0, f64::max);
            assert!(worst > 1.0, "the chi-square bound cannot tell the draft from the target");
        }
    }
    e.shutdown().await;
}

#[tokio::test]
async fn bad_drafts_fail_before_any_work_and_leave_the_engine_usable() {
    let e = Engine::new();
    load(&e, "target", &spec_fixture("tiny-target")).await;
    load(&e, "wide", &spec_fixture("tiny-wide")).await;
    let p = json!({"model": "target", "prompt": {"tokens": [0, 5]}, "maxTokens": 4, "temperature": 0});
    let err = e.create_stream(&with(&p, json!({"draftModel": "nope"})), &Value::Null).await.err().unwrap();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::ModelNotLoaded, "Model not loaded: nope"));
    let err = e.create_stream(&with(&p, json!({"draftModel": "wide"})), &Value::Null).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    assert!(err.message.contains("Vocabulary size mismatch: primary=32, draft=33"), "{}", err.message);
    assert_eq!(err.details["field"], "draftModel");
    for k in [0, 17, -1] {
        let err = e.create_stream(&with(&p, json!({"draftModel": "target", "numDraftTokens": k})), &Value::Null).await.err().unwrap();
        assert_eq!(err.code, ErrorCode::InvalidParams, "numDraftTokens {k}");
    }
    assert_eq!(e.active_streams(), 0);
    assert_eq!(run(&e, p.clone()).await.ids.len(), 4);
    e.shutdown().await;
}

#[tokio::test]
async fn unloading_the_draft_ends_its_streams_with_an_error_chunk() {
    let e = Engine::new();
    load(&e, "llama", &fixture("llama")).await;
    load(&e, "draft", &fixture("llama-4bit")).await;
    let p = json!({"model": "llama", "prompt": PROMPTS[0], "maxTokens": 4000, "temperature": 0, "draftModel": "draft"});
    let mut s = e.create_stream(&p, &Value::Null).await.unwrap();
    let other = e.create_stream(&json!({"model": "llama", "prompt": PROMPTS[1], "maxTokens": 6, "temperature": 0}), &Value::Null).await.unwrap();
    assert!(!s.next_batch().await.is_empty());
    e.unload_model("draft".into()).await.unwrap();
    let rest = drain(s).await;
    match rest.terminal {
        Chunk::Error(err) => {
            assert_eq!(err.code, ErrorCode::GenerationError);
            assert_eq!(err.message, "Draft model draft was unloaded during generation");
        }
        other => panic!("expected an error chunk, got {other:?}"),
    }
    assert_eq!(drain(other).await.ids.len(), 6, "a plain stream of the target is unaffected");
    assert_eq!(e.active_streams(), 0);
    let err = e.create_stream(&p, &Value::Null).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::ModelNotLoaded);
    e.shutdown().await;
}

#[tokio::test]
async fn cancel_and_abort_mid_proposal_free_the_stream() {
    let e = Engine::new();
    load(&e, "llama", &fixture("llama")).await;
    load(&e, "draft", &fixture("llama-4bit")).await;
    let p = json!({"model": "llama", "prompt": PROMPTS[0], "maxTokens": 4000, "temperature": 0, "draftModel": "draft", "numDraftTokens": 8});
    let mut s = e.create_stream(&p, &Value::Null).await.unwrap();
    assert!(!s.next_batch().await.is_empty());
    s.control().cancel(false);
    assert_eq!(e.active_streams(), 0, "slot freed at once");
    let n = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        while !s.next_batch().await.is_empty() {
            n += 1;
        }
        n
    })
    .await
    .expect("cancelled stream must end promptly");
    assert!(n < 4000);
    let s = e.create_stream(&p, &Value::Null).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.control().cancel(true);
    match drain(s).await.terminal {
        Chunk::Error(err) => assert_eq!(err.code, ErrorCode::Cancelled),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // penalties: decoded without speculation (same output, no draft stats)
    let pen = json!({"model": "llama", "prompt": PROMPTS[0], "maxTokens": 8, "temperature": 0, "repetitionPenalty": 1.3});
    let a = run(&e, pen.clone()).await;
    let b = run(&e, with(&pen, json!({"draftModel": "draft"}))).await;
    assert_eq!(a.ids, b.ids);
    assert!(stats(&b).draft_tokens_proposed.is_none());
    e.shutdown().await;
}
