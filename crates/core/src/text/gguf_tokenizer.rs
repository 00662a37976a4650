//! Rebuilds a `tokenizers::Tokenizer` (and the tokenizer_config facts: BOS/EOS, add_bos_token,
//! chat template) from a GGUF file's `tokenizer.ggml.*` metadata. Vocabulary kinds:
//! `gpt2` (byte-level BPE; the pre-tokenizer regex chosen by `tokenizer.ggml.pre`) and `llama`
//! (SentencePiece-style BPE with byte fallback; merges derived from the token scores, as HF's
//! converter does).

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use super::TextTokenizer;
use crate::error::EngineResult;
use crate::models::gguf::GgufModelFile;

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5: Qwen2's split with combining marks (\p{M}) kept inside words.
const QWEN35_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's own split (what ByteLevel's use_regex applies).
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

pub fn tokenizer_from_gguf(g: &GgufModelFile) -> EngineResult<TextTokenizer> {
    let tokens = g.strings("tokenizer.ggml.tokens").ok_or_else(|| g.err("has no tokenizer.ggml.tokens"))?;
    let types: Vec<i32> = g
        .numbers("tokenizer.ggml.token_type")
        .map(|v| v.into_iter().map(|t| t as i32).collect())
        .unwrap_or_else(|| vec![1; tokens.len()]);
    let kind = g.string("tokenizer.ggml.model").unwrap_or_default();
    let spec = match kind.as_str() {
        "gpt2" => gpt2_json(g, &tokens, &types)?,
        "llama" => spm_json(g, &tokens, &types)?,
        other => return Err(g.err(&format!("has unsupported tokenizer model '{other}' (gpt2, llama)"))),
    };
    let inner = Tokenizer::from_bytes(serde_json::to_vec(&spec).unwrap())
        .map_err(|e| g.err(&format!("has a tokenizer that cannot be rebuilt: {e}")))?;
    let name = |key: &str| g.i64(key).and_then(|i| tokens.get(i as usize).cloned());
    let add_bos = g.bool("tokenizer.ggml.add_bos_token").unwrap_or(kind == "llama");
    let mut cfg = json!({"add_bos_token": add_bos, "bos_token": name("tokenizer.ggml.bos_token_id"), "eos_token": name("tokenizer.ggml.eos_token_id")});
    if let Some(t) = g.string("tokenizer.chat_template") {
        cfg["chat_template"] = json!(t);
    }
    let mut eos_ids = vec![];
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = g.i64(key) {
            eos_ids.push(id);
        }
    }
    Ok(TextTokenizer::from_parts(inner, &cfg, Some(&json!({"eos_token_id": eos_ids}))))
}

/// Control (3) tokens are special added tokens; user-defined (4) ones are plain added tokens.
fn added_tokens(tokens: &[String], types: &[i32]) -> Vec<Value> {
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, &t))| t == 3 || t == 4)
        .map(|(i, (tok, &t))| json!({"id": i, "content": tok, "single_word": false, "lstrip": false, "rstrip": false, "normalized": t == 4, "special": t == 3}))
        .collect()
}

fn gpt2_json(g: &GgufModelFile, tokens: &[String], types: &[i32]) -> EngineResult<Value> {
    let merges = g.strings("tokenizer.ggml.merges").ok_or_else(|| g.err("has a gpt2 tokenizer without tokenizer.ggml.merges"))?;
    let merges: Vec<Value> = merges.iter().filter_map(|m| m.split_once(' ').map(|(a, b)| json!([a, b]))).collect();
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    // Each model family's pre-tokenizer: regex splits applied in turn (every match and every
    // gap between matches becomes a piece), then the byte-to-unicode mapping.
    let splits = |res: &[&str]| {
        let mut steps: Vec<Value> = res.iter().map(|r| split(r)).collect();
        steps.push(byte_level(false));
        json!({"type": "Sequence", "pretokenizers": steps})
    };
    let pre = match g.string("tokenizer.ggml.pre").as_deref() {
        Some("smollm") => json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        Some("llama-bpe" | "llama3" | "smaug-bpe" | "dbrx") => splits(&[LLAMA3_SPLIT]),
        Some("qwen2" | "deepseek-r1-qwen" | "stablelm2") => splits(&[QWEN2_SPLIT]),
        Some("qwen35") => splits(&[QWEN35_SPLIT]),
        // Digits one by one, then GPT-2's split.
        Some("starcoder" | "refact" | "command-r") => splits(&[r"\p{N}", GPT2_SPLIT]),
        Some("deepseek-coder") => splits(&[r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"]),
        Some("falcon") => splits(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_SPLIT, r"[0-9][0-9][0-9]"]),
        _ => byte_level(true),
    };
    // Llama-3's tokenizer.json sets ignore_merges: a pre-token that is itself a vocabulary entry
    // is taken whole, even where no merge sequence reaches it (" Việt" is one id).
    let ignore_merges = matches!(g.string("tokenizer.ggml.pre").as_deref(), Some("llama-bpe" | "llama3" | "smaug-bpe"));
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                  "vocab": vocab, "merges": merges},
    }))
}

/// SentencePiece BPE: every vocab piece that is the concatenation of two vocab pieces yields a
/// merge, ranked by the merged piece's score (higher first), as HF's SentencePiece extractor.
fn spm_json(g: &GgufModelFile, tokens: &[String], types: &[i32]) -> EngineResult<Value> {
    let scores: Vec<f32> = g
        .numbers("tokenizer.ggml.scores")
        .map(|v| v.into_iter().map(|s| s as f32).collect())
        .unwrap_or_else(|| vec![0.0; tokens.len()]);
    let index: std::collections::HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id) != Some(&1) {
            continue; // only normal pieces merge
        }
        for (cut, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(cut);
            if let (Some(&ia), Some(&ib)) = (index.get(a), index.get(b)) {
                merges.push((scores[id], ia, ib, a, b));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let merges: Vec<Value> = merges.iter().map(|m| json!([m.3, m.4])).collect();
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let unk = g.i64("tokenizer.ggml.unknown_token_id").and_then(|i| tokens.get(i as usize).cloned());
    let add_space = g.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let mut norm = vec![json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})];
    let mut dec = vec![json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}), json!({"type": "ByteFallback"}), json!({"type": "Fuse"})];
    if add_space {
        norm.insert(0, json!({"type": "Prepend", "prepend": "▁"}));
        dec.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens(tokens, types),
        "normalizer": {"type": "Sequence", "normalizers": norm},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": dec},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

