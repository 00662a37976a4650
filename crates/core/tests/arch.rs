//! The phi3 and mixture-of-experts families (qwen3_moe, its 4-bit stacked-expert form, mixtral)
//! through the engine, on the seeded fixtures of `scripts/models/make_arch_fixtures.py`: each
//! generates the same ids alone and as one of 3 concurrent streams sharing batched forward passes
//! (one of them with a prompt longer than a prefill chunk, so prefill and decode rows mix), and
//! malformed MoE / longrope folders fail to load with a ModelLoadError naming the cause.

mod common;
use common::{drain, fixture, run};

use std::path::PathBuf;

use mlx_serving_core::{Engine, ErrorCode};
use serde_json::{json, Value};

const PROMPT: &str = "The quick brown fox jumps over the lazy dog.";

async fn alone_and_in_a_batch_of_3(model: &str) {
    let e = Engine::new();
    e.load_model(&json!({"model": model, "localPath": fixture(model)})).await.expect("load fixture");
    let long_prompt = "In 1969 astronauts walked on the Moon and the whole world watched. ".repeat(60);
    let params = [
        json!({"model": model, "prompt": PROMPT, "maxTokens": 24, "temperature": 0}),
        json!({"model": model, "prompt": "Once upon a time", "maxTokens": 20, "temperature": 0.8, "seed": 11, "topK": 40}),
        json!({"model": model, "prompt": long_prompt, "maxTokens": 16, "temperature": 0}),
    ];
    let mut alone = Vec::new();
    for p in &params {
        alone.push(run(&e, p.clone()).await.ids);
    }
    e.reset_batch_stats();
    let mut streams = Vec::new();
    for p in &params {
        streams.push(e.create_stream(p, &Value::Null).await.expect("create stream"));
    }
    let mut it = streams.into_iter();
    let (a, b, c) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let (ra, rb, rc) = tokio::join!(drain(a), drain(b), drain(c));
    for (i, r) in [ra, rb, rc].into_iter().enumerate() {
        assert!(!r.ids.is_empty(), "{model} stream {i} generated nothing");
        assert_eq!(r.ids, alone[i], "{model}: stream {i} differs when batched");
    }
    let stats = e.batch_stats();
    assert!(stats["maxBatchSize"].as_u64().unwrap() >= 2, "{model}: streams were never batched: {stats}");
    e.shutdown().await;
}

#[tokio::test]
async fn phi3_generates_the_same_ids_alone_and_batched() {
    alone_and_in_a_batch_of_3("phi3").await;
}

#[tokio::test]
async fn qwen3_moe_generates_the_same_ids_alone_and_batched() {
    alone_and_in_a_batch_of_3("qwen3_moe").await;
}

#[tokio::test]
async fn qwen3_moe_4bit_generates_the_same_ids_alone_and_batched() {
    alone_and_in_a_batch_of_3("qwen3_moe-4bit").await;
}

#[tokio::test]
async fn mixtral_generates_the_same_ids_alone_and_batched() {
    alone_and_in_a_batch_of_3("mixtral").await;
}

/// A copy of fixture `name` with its config.json edited by `edit`.
fn edited_copy(name: &str, tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let src = PathBuf::from(fixture(name));
    let dst = std::env::temp_dir().join(format!("mlx-serving-arch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let cfg_path = dst.join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    dst
}

#[tokio::test]
async fn malformed_moe_and_longrope_folders_are_load_errors() {
    let e = Engine::new();
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(&str, &str, Edit, &str)> = vec![
        // More experts than the weights hold: the first missing expert tensor is named.
        ("qwen3_moe", "experts9", Box::new(|c: &mut Value| c["num_experts"] = json!(9)), "mlp.experts.8."),
        // Fewer: the extra expert is reported instead of silently dropped.
        ("qwen3_moe", "experts7", Box::new(|c: &mut Value| c["num_experts"] = json!(7)), "experts.7"),
        ("qwen3_moe", "topk", Box::new(|c: &mut Value| c["num_experts_per_tok"] = json!(12)), "num_experts_per_tok"),
        ("mixtral", "mixtral5", Box::new(|c: &mut Value| c["num_local_experts"] = json!(5)), "block_sparse_moe.experts.4."),
        // Stacked experts whose count disagrees with config.json.
        ("qwen3_moe-4bit", "stacked", Box::new(|c: &mut Value| c["num_experts"] = json!(4)), "switch_mlp"),
        ("phi3", "longrope", Box::new(|c: &mut Value| c["rope_scaling"]["long_factor"] = json!([1.0, 2.0])), "long_factor"),
        ("phi3", "nolong", Box::new(|c: &mut Value| { c["rope_scaling"].as_object_mut().unwrap().remove("long_factor"); }), "long_factor"),
        ("phi3", "heads", Box::new(|c: &mut Value| c["num_key_value_heads"] = json!(4)), "qkv_proj"),
    ];
    for (name, tag, edit, needle) in cases {
        let dir = edited_copy(name, tag, edit);
        let err = e.load_model(&json!({"model": tag, "localPath": dir.to_string_lossy()})).await.err().unwrap_or_else(|| panic!("{tag}: loaded"));
        assert_eq!(err.code, ErrorCode::ModelLoadError, "{tag}: {err}");
        assert!(err.message.contains(needle), "{tag}: message {:?} should name {needle}", err.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // The engine is still usable.
    e.load_model(&json!({"model": "qwen3_moe", "localPath": fixture("qwen3_moe")})).await.unwrap();
    assert_eq!(run(&e, json!({"model": "qwen3_moe", "prompt": PROMPT, "maxTokens": 3, "temperature": 0})).await.ids.len(), 3);
    e.shutdown().await;
}
