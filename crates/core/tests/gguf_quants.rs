//! GGUF tensor types beyond MLX's reader: our block decoders (models/gguf_quants.rs) against
//! the `gguf` Python package's `gguf.quants.dequantize` (scripts/parity/gguf_quants.py) on
//! seeded random blocks of every type and on real tensors of the Gemma 3 270M Q4_K_M and
//! SmolLM2 Q4_1 files; Q4_1/Q8_0 re-packed into MLX's affine form bit-identical to MLX's own
//! loader; Gemma 3 270M straight from its Q4_K_M GGUF generates the same greedy ids as the
//! converted HF folder; a GGUF with an unknown tensor type is a ModelLoadError naming the file.

mod common;

use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype};
use mlx_serving_core::models::gguf::GgufModelFile;
use mlx_serving_core::models::gguf_quants::{self, dequantize};
use mlx_serving_core::{Engine, ErrorCode};
use serde_json::json;

fn cache(p: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache").join(p);
    assert!(p.exists(), "{} missing: run scripts/parity/run_all.sh (npm test does)", p.display());
    p.canonicalize().unwrap()
}

fn floats(a: &Array) -> Vec<f32> {
    a.as_dtype(Dtype::Float32).unwrap().as_slice::<f32>().to_vec()
}

/// Largest |ours − reference|, relative to the reference's largest magnitude.
fn rel_err(ours: &[f32], want: &[f32]) -> f32 {
    assert_eq!(ours.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    ours.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale
}

#[test]
fn block_decoders_match_gguf_python() {
    let refs = Array::load_safetensors(cache("fixtures/gguf-quants/reference.safetensors")).unwrap();
    let types = [
        ("F16", gguf_quants::F16), ("BF16", gguf_quants::BF16), ("Q4_0", gguf_quants::Q4_0), ("Q4_1", gguf_quants::Q4_1),
        ("Q5_0", gguf_quants::Q5_0), ("Q5_1", gguf_quants::Q5_1), ("Q8_0", gguf_quants::Q8_0), ("Q2_K", gguf_quants::Q2_K),
        ("Q3_K", gguf_quants::Q3_K), ("Q4_K", gguf_quants::Q4_K), ("Q5_K", gguf_quants::Q5_K), ("Q6_K", gguf_quants::Q6_K),
    ];
    for (name, ty) in types {
        let raw = refs[&format!("synthetic/{name}.raw")].as_slice::<u8>().to_vec();
        let want = floats(&refs[&format!("synthetic/{name}.values")]);
        let ours = dequantize(ty, &raw);
        let err = rel_err(&ours, &want);
        eprintln!("synthetic {name}: {} values, max rel err {err:e}", want.len());
        assert!(err <= 1e-6, "{name}: max rel err {err}");
    }
    for (file, path) in [("gemma3", "downloads/gemma3-270m/gemma-3-270m-q4_k_m.gguf"), ("smollm2", "downloads/SmolLM2-135M-Instruct.Q4_1.gguf")] {
        let g = GgufModelFile::open(&cache(path)).unwrap();
        let prefix = format!("real/{file}/");
        let mut checked = 0;
        for (key, want) in refs.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            let tensor = &key[prefix.len()..];
            let ty = g.tensor_types().into_iter().find(|t| t.0 == tensor).unwrap().1;
            let want = floats(want);
            let ours = g.dequantized(tensor).unwrap();
            let err = rel_err(&ours[..want.len()], &want);
            eprintln!("{file} {tensor} ({}): {} values, max rel err {err:e}", gguf_quants::type_name(ty), want.len());
            assert!(err <= 1e-6, "{file} {tensor}: max rel err {err}");
            checked += 1;
        }
        assert!(checked >= 2, "{file}: no reference tensors");
    }
}

#[test]
fn q4_1_and_q8_0_repack_exactly_like_mlx_loader() {
    let path = cache("downloads/SmolLM2-135M-Instruct.Q4_1.gguf");
    let ours = GgufModelFile::open(&path).unwrap().arrays().unwrap();
    let mlx = mlx_rs::io::GgufFile::load(&path).unwrap().arrays().unwrap();
    assert_eq!(ours.len(), mlx.len());
    for name in ["token_embd.weight", "token_embd.scales", "token_embd.biases", "blk.0.ffn_down.weight", "blk.0.ffn_down.scales", "blk.0.ffn_down.biases", "blk.3.attn_q.weight", "blk.3.attn_q.biases", "output_norm.weight"] {
        let (a, b) = (&ours[name], &mlx[name]);
        assert_eq!((a.shape(), a.dtype()), (b.shape(), b.dtype()), "{name}");
        assert!(a.eq_values(b).unwrap(), "{name} differs from MLX's loader");
    }
}

#[tokio::test]
async fn gemma3_q4_k_m_gguf_generates_like_the_converted_folder() {
    let gguf = cache("downloads/gemma3-270m/gemma-3-270m-q4_k_m.gguf");
    let folder = cache("models/gemma-3-270m");
    // Where GGUF load time goes (reported, not asserted).
    let t0 = std::time::Instant::now();
    let g = GgufModelFile::open(&gguf).unwrap();
    let t_open = t0.elapsed();
    let t0 = std::time::Instant::now();
    mlx_serving_core::text::gguf_tokenizer::tokenizer_from_gguf(&g).unwrap();
    let t_tok = t0.elapsed();
    let t0 = std::time::Instant::now();
    drop(g.arrays().unwrap());
    eprintln!("gguf parts: read+parse {:.2}s, tokenizer {:.2}s, decode tensors {:.2}s", t_open.as_secs_f64(), t_tok.as_secs_f64(), t0.elapsed().as_secs_f64());
    drop(g);
    let e = Engine::new();
    let t0 = std::time::Instant::now();
    let h = e.load_model(&json!({"model": "g-gguf", "localPath": gguf})).await.expect("load gemma gguf");
    let gguf_load = t0.elapsed();
    assert_eq!(h.handle["metadata"]["modelType"], "gemma3_text");
    let t0 = std::time::Instant::now();
    e.load_model(&json!({"model": "g-hf", "localPath": folder})).await.expect("load gemma folder");
    let hf_load = t0.elapsed();
    // Token prompt: the same ids for both (the tokenizers are compared in tokenizer_vectors/gguf).
    let prompt = json!({"tokens": [2, 818, 5279, 529, 7001, 563]});
    let params = |m: &str| json!({"model": m, "prompt": prompt, "maxTokens": 24, "temperature": 0});
    let a = common::run(&e, params("g-gguf")).await;
    let b = common::run(&e, params("g-hf")).await;
    eprintln!("load: gguf {:.2}s, converted folder {:.2}s; gguf text {:?}", gguf_load.as_secs_f64(), hf_load.as_secs_f64(), a.text);
    assert_eq!(a.ids.len(), 24);
    assert_eq!(a.ids, b.ids, "greedy ids differ: gguf {:?} vs folder {:?}", a.text, b.text);
    // The GGUF's own tokenizer reads a string prompt the same way.
    let text = json!({"model": "g-gguf", "prompt": "The capital of France is", "maxTokens": 8, "temperature": 0});
    let c = common::run(&e, text.clone()).await;
    let d = common::run(&e, json!({"model": "g-hf", "prompt": "The capital of France is", "maxTokens": 8, "temperature": 0})).await;
    assert_eq!(c.ids, d.ids, "{:?} vs {:?}", c.text, d.text);
    e.shutdown().await;
}

/// A minimal GGUF v3: `general.architecture = llama` and one 2×32 tensor of type `ty`.
fn tiny_gguf(ty: u32, data: &[u8]) -> Vec<u8> {
    let s = |out: &mut Vec<u8>, t: &str| {
        out.extend((t.len() as u64).to_le_bytes());
        out.extend(t.as_bytes());
    };
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, "llama");
    s(&mut b, "token_embd.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    b.extend(ty.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend(data);
    b
}

#[tokio::test]
async fn unknown_tensor_type_and_cut_tensor_data_are_model_load_errors() {
    let dir = std::env::temp_dir().join(format!("mlx-serving-gguf-quants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unknown = dir.join("unknown-type.gguf");
    std::fs::write(&unknown, tiny_gguf(99, &[0; 256])).unwrap();
    let cut = dir.join("cut-data.gguf");
    std::fs::write(&cut, tiny_gguf(gguf_quants::Q4_0, &[0; 20])).unwrap(); // needs 36 bytes
    let e = Engine::new();
    for (p, want) in [(&unknown, "unsupported tensor type type 99"), (&cut, "truncated")] {
        let err = e.load_model(&json!({"model": "bad", "localPath": p})).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::ModelLoadError, "{err:?}");
        assert!(err.message.contains(p.file_name().unwrap().to_str().unwrap()), "{}", err.message);
        assert!(err.message.contains(want), "{}", err.message);
    }
    std::fs::remove_dir_all(&dir).ok();
    e.shutdown().await;
}
