//! Draft-model compatibility (spec §7.8 / §8.5) and the batched entry points (`batch_check_draft`,
//! `batch_tokenize`) through the engine's public Rust API, on the seeded fixtures.

mod common;
use common::fixture;



use mlx_serving_core::{Engine, ErrorCode};
use serde_json::{json, Value};

async fn load(e: &Engine, id: &str, fixture_name: &str) -> Value {
    e.load_model(&json!({"model": id, "localPath": fixture(fixture_name)})).await.expect("load fixture").handle
}

#[tokio::test]
async fn report_from_two_loaded_models() {
    let e = Engine::new();
    let llama = load(&e, "llama", "llama").await;
    let qwen = load(&e, "qwen2", "qwen2").await;
    let r = e.check_draft(&json!("llama"), &json!("qwen2")).await.unwrap();
    assert_eq!(r["compatible"], true);
    assert_eq!(r["errors"], json!([]));
    assert_eq!(r["details"]["primaryModel"]["architecture"], "llama");
    assert_eq!(r["details"]["draftModel"]["architecture"], "qwen2");
    assert_eq!(r["details"]["primaryModel"]["vocabSize"], llama["descriptor"]["tokenizer"]["vocabSize"]);
    assert_eq!(r["details"]["primaryModel"]["parameterCount"], llama["metadata"]["parameterCount"]);
    assert_eq!(r["details"]["draftModel"]["parameterCount"], qwen["metadata"]["parameterCount"]);
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(warnings[0].starts_with("Architecture mismatch: primary=llama, draft=qwen2."), "{warnings:?}");
    e.shutdown().await;
}

#[tokio::test]
async fn unknown_or_bad_ids_fail_per_entry() {
    let e = Engine::new();
    load(&e, "a", "llama").await;
    let err = e.check_draft(&json!("a"), &json!("nope")).await.unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::ModelNotLoaded, "Model not loaded: nope"));
    let err = e.check_draft(&json!(1), &json!("a")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidParams);
    assert_eq!(err.details["field"], "primaryId");
    let results = e.check_drafts(vec![("a".into(), "a".into()), ("zz".into(), "a".into())]).await.unwrap();
    assert!(results[0].as_ref().unwrap()["compatible"].as_bool().unwrap());
    assert_eq!(results[1].as_ref().unwrap_err().code, ErrorCode::ModelNotLoaded);
    e.shutdown().await;
}

#[tokio::test]
async fn tokenize_batch_matches_single_calls() {
    let e = Engine::new();
    load(&e, "m", "llama").await;
    let reqs = vec![
        json!({"model": "m", "text": "Hello world"}),
        json!({"model": "m"}),
        json!({"model": "other", "text": "x"}),
        json!({"model_id": "m", "text": "", "addBos": false}),
    ];
    let out = e.tokenize_batch(&reqs).await.unwrap();
    assert_eq!(out.len(), 4);
    let single = e.tokenize(&reqs[0]).await.unwrap();
    assert_eq!(out[0].as_ref().unwrap().tokens, single.tokens);
    assert_eq!(out[1].as_ref().unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(out[2].as_ref().unwrap_err().code, ErrorCode::ModelNotLoaded);
    assert!(out[3].as_ref().unwrap().tokens.is_empty());
    assert!(e.tokenize_batch(&[]).await.unwrap().is_empty());
    e.shutdown().await;
}
