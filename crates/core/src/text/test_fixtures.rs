//! Test-only: small in-memory tokenizers of the two families the engine meets (GPT-2 style
//! byte-level BPE, SentencePiece-style BPE with byte fallback), written as tokenizer.json
//! documents so the tests exercise the same loading path as real model folders, and need no
//! downloaded files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Map, Value};

/// GPT-2's byte → printable char table (byte-level BPE spells byte `b` as this char).
pub fn byte_to_char(b: u8) -> char {
    let printable =
        |x: u32| (33..=126).contains(&x) || (161..=172).contains(&x) || (174..=255).contains(&x);
    if printable(b as u32) {
        return char::from_u32(b as u32).unwrap();
    }
    let shifted = (0..b as u32).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shifted).unwrap()
}

fn bytes_to_piece(s: &str) -> Vec<String> {
    s.bytes().map(|b| byte_to_char(b).to_string()).collect()
}

/// Adds left-to-right merges building `pieces` into one token, with every intermediate token.
fn add_word(pieces: Vec<String>, vocab: &mut Map<String, Value>, merges: &mut Vec<String>) {
    let mut acc = pieces[0].clone();
    for p in &pieces[1..] {
        let merged = format!("{acc}{p}");
        if !vocab.contains_key(&merged) {
            merges.push(format!("{acc} {p}"));
            let id = vocab.len();
            vocab.insert(merged.clone(), json!(id));
        }
        acc = merged;
    }
}

fn added(id: u32, content: &str) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": true})
}

/// SmolLM2/GPT-2 style: ids 0..3 are `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, then the 256
/// byte tokens, then merges. Merges include whole words and deliberately *partial* UTF-8 tokens
/// (the first two bytes of 😀 and of 你) so multi-byte chars split across tokens.
pub fn byte_level_json() -> Value {
    let mut vocab = Map::new();
    for (i, t) in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for b in 0..=255u8 {
        let id = vocab.len();
        vocab.insert(byte_to_char(b).to_string(), json!(id));
    }
    let mut merges = Vec::new();
    for w in ["Hello", " world", " the", " capital", " of", " France", "?", " café", "é", " naïve"]
    {
        add_word(bytes_to_piece(w), &mut vocab, &mut merges);
    }
    for partial in ["😀", "你"] {
        add_word(bytes_to_piece(partial)[..2].to_vec(), &mut vocab, &mut merges);
    }
    json!({
        "version": "1.0",
        "added_tokens": [added(0, "<|endoftext|>"), added(1, "<|im_start|>"), added(2, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab, "merges": merges}
    })
}

/// Llama-2/Mistral style SentencePiece BPE: `<unk>`, `<s>`, `</s>`, the 256 `<0xNN>` byte
/// tokens, ASCII chars and `▁`, then merges. Characters outside the vocabulary (CJK, emoji,
/// most accents) fall back to byte tokens. With `bos_post_processor` the post-processor adds
/// `<s>` (like tokenizer.json of Llama-2); without it nothing is added by the tokenizer itself.
pub fn sentencepiece_json(bos_post_processor: bool) -> Value {
    let mut vocab = Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for b in 0..=255u8 {
        let id = vocab.len();
        vocab.insert(format!("<0x{b:02X}>"), json!(id));
    }
    let chars = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'é";
    for c in chars.chars() {
        let id = vocab.len();
        vocab.insert(c.to_string(), json!(id));
    }
    let mut merges = Vec::new();
    for w in ["▁Hello", "▁world", "▁the", "▁capital", "▁of", "▁France", "▁café"] {
        add_word(w.chars().map(String::from).collect(), &mut vocab, &mut merges);
    }
    let post = if bos_post_processor {
        json!({"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                        {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
               "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}})
    } else {
        Value::Null
    };
    json!({
        "version": "1.0",
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": null,
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                  "vocab": vocab, "merges": merges}
    })
}

/// A fresh model folder under the system temp dir holding the given JSON files.
pub fn model_dir(files: &[(&str, &Value)]) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("mlx-serving-text-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, value) in files {
        std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
    }
    dir
}

/// The real SmolLM2 folder, when another step of the project has produced it: the repo's
/// `.cache/models/` (crates/core/../..), or the folder named by `MLX_TEST_MODELS_DIR`.
pub fn smollm2_dir() -> Option<PathBuf> {
    let models = std::env::var_os("MLX_TEST_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"));
    let dir = models.join("SmolLM2-135M-Instruct");
    if dir.join("tokenizer.json").is_file() {
        Some(dir)
    } else {
        eprintln!("note: {} absent, real-tokenizer test skipped", dir.display());
        None
    }
}
