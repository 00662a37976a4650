//! Structured output (spec §7.7) through the engine's public Rust API, on the random-weight
//! `llama` fixture: its text is noise, so a valid document can only come from the constraint.
//! Every schema of `tests/data/structured_schemas.json` (shared with the vitest suite) is decoded
//! at temperature 1 with several seeds (and with top-k / top-p / penalties); each output must
//! parse and validate against its schema. Bad schemas and `yaml` fail with `GuidanceError`, and
//! the engine stays usable.

mod common;
use common::fixture;

use std::path::Path;
use std::time::Duration;

use mlx_serving_core::generation::{Chunk, FinishReason};
use mlx_serving_core::{Engine, EngineError, ErrorCode};
use serde_json::{json, Value};

const PROMPT: &str = "Reply with JSON.";

fn schemas() -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/structured_schemas.json");
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    assert!(all.len() >= 20, "the suite needs at least 20 schemas");
    all
}

async fn engine() -> Engine {
    let e = Engine::new();
    e.load_model(&json!({"model": "llama", "localPath": fixture("llama")})).await.expect("load fixture");
    e
}

/// Runs one request; returns its text and finish reason, or the error (thrown or as a chunk).
async fn generate(e: &Engine, params: Value) -> Result<(String, FinishReason), EngineError> {
    let mut s = e.create_stream(&params, &Value::Null).await?;
    let mut text = String::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(120), s.next_batch()).await.expect("stream stalled");
        assert!(!batch.is_empty(), "stream ended without a terminal chunk");
        for c in batch {
            match c {
                Chunk::Token { token, .. } => text.push_str(&token),
                Chunk::Metadata(stats) => return Ok((text, stats.finish_reason)),
                Chunk::Error(err) => return Err(err),
            }
        }
    }
}

fn request(schema: &Value, extra: Value) -> Value {
    let mut p = json!({"model": "llama", "prompt": PROMPT, "maxTokens": 400, "temperature": 1,
                       "structured": {"format": "json", "schema": schema}});
    p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    p
}

fn assert_valid(name: &str, schema: &Value, text: &str, finish: FinishReason) {
    if std::env::var_os("SHOW_STRUCTURED").is_some() {
        eprintln!("{name} [{finish:?}]: {text}");
    }
    assert!(matches!(finish, FinishReason::Stop | FinishReason::Eos), "{name}: finished with {finish:?}: {text:?}");
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text:?}"));
    let validator = jsonschema::options().should_validate_formats(true).build(schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{name}: {text} does not validate: {errors:?}");
}

#[tokio::test]
async fn every_schema_validates_at_temperature_1_with_several_seeds() {
    let e = engine().await;
    for case in schemas() {
        let (name, schema) = (case["name"].as_str().unwrap(), &case["schema"]);
        for seed in [1, 2, 3] {
            let (text, finish) = generate(&e, request(schema, json!({"seed": seed}))).await.unwrap_or_else(|err| panic!("{name}: {err:?}"));
            assert_valid(name, schema, &text, finish);
        }
    }
    e.shutdown().await;
}

#[tokio::test]
async fn greedy_and_filtered_sampling_stay_valid() {
    let e = engine().await;
    let variants = [
        json!({"temperature": 0}),
        json!({"seed": 7, "topK": 5}),
        json!({"seed": 8, "topP": 0.9, "minP": 0.05}),
        json!({"seed": 9, "temperature": 2, "repetitionPenalty": 1.3, "presencePenalty": 0.5}),
    ];
    for case in schemas() {
        let (name, schema) = (case["name"].as_str().unwrap(), &case["schema"]);
        for v in &variants {
            let (text, finish) = generate(&e, request(schema, v.clone())).await.unwrap_or_else(|err| panic!("{name} {v}: {err:?}"));
            assert_valid(name, schema, &text, finish);
        }
    }
    e.shutdown().await;
}

#[tokio::test]
async fn constrained_greedy_is_deterministic_and_concurrent_streams_stay_independent() {
    let e = engine().await;
    let all = schemas();
    let schema = &all[0]["schema"];
    let alone = generate(&e, request(schema, json!({"seed": 5}))).await.unwrap();
    let other = &all[1]["schema"];
    let (a, b, plain) = tokio::join!(
        generate(&e, request(schema, json!({"seed": 5}))),
        generate(&e, request(other, json!({"seed": 6}))),
        generate(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 8, "temperature": 0})),
    );
    assert_eq!(a.unwrap(), alone, "a seeded constrained stream is schedule invariant");
    let (text, finish) = b.unwrap();
    assert_valid("concurrent", other, &text, finish);
    assert_eq!(plain.unwrap().1, FinishReason::Length, "an unconstrained row beside constrained ones");
    e.shutdown().await;
}

async fn guidance_error(e: &Engine, structured: Value) -> EngineError {
    let params = json!({"model": "llama", "prompt": PROMPT, "maxTokens": 8, "structured": structured});
    match generate(e, params).await {
        Err(err) => err,
        Ok(out) => panic!("expected GuidanceError for {structured}, got {out:?}"),
    }
}

#[tokio::test]
async fn bad_schemas_yaml_and_giant_schemas_are_guidance_errors_and_the_engine_goes_on() {
    let e = engine().await;
    let bad = [
        json!({"type": "strin"}),
        json!({"type": "integer", "minimum": 5, "maximum": 1}),
        json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}, "required": ["a"]}),
        json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
        json!({"type": "string", "pattern": "(unclosed"}),
        json!({"enum": []}),
        json!({"not": {}}),
    ];
    for schema in bad {
        let err = guidance_error(&e, json!({"format": "json", "schema": schema})).await;
        assert_eq!(err.code, ErrorCode::GuidanceError, "{schema}: {err:?}");
        assert!(err.message.len() > 20, "{schema}: llguidance's message is passed on: {}", err.message);
    }

    let err = guidance_error(&e, json!({"format": "yaml", "schema": {"type": "object"}})).await;
    assert_eq!(err.code, ErrorCode::GuidanceError);
    assert!(err.message.contains("yaml"), "{}", err.message);

    let props: serde_json::Map<String, Value> =
        (0..2000).map(|i| (format!("property_{i}"), json!({"type": "string"}))).collect();
    let giant = json!({"type": "object", "properties": props});
    assert!(serde_json::to_string(&giant).unwrap().len() > 32768);
    let err = guidance_error(&e, json!({"format": "json", "schema": giant})).await;
    assert_eq!(err.code, ErrorCode::GuidanceError);
    assert!(err.message.contains("32768"), "{}", err.message);

    // A schema that is not an object is a parameter error, before guidance is involved.
    let err = guidance_error(&e, json!({"format": "json", "schema": "nope"})).await;
    assert_eq!(err.code, ErrorCode::InvalidParams);

    // Still serving, constrained and not.
    let schema = json!({"type": "boolean"});
    let (text, finish) = generate(&e, request(&schema, json!({"seed": 1}))).await.unwrap();
    assert_valid("after errors", &schema, &text, finish);
    let (_, finish) = generate(&e, json!({"model": "llama", "prompt": PROMPT, "maxTokens": 4, "temperature": 0})).await.unwrap();
    assert_eq!(finish, FinishReason::Length);
    e.shutdown().await;
}

#[tokio::test]
async fn max_tokens_cuts_a_document_short_with_finish_reason_length() {
    let e = engine().await;
    let schema = json!({"type": "array", "items": {"type": "integer"}, "minItems": 50});
    let (text, finish) = generate(&e, request(&schema, json!({"seed": 1, "maxTokens": 5}))).await.unwrap();
    assert_eq!(finish, FinishReason::Length);
    assert!(text.starts_with('['), "{text:?}");
    e.shutdown().await;
}
