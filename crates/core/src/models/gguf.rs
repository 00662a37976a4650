//! Loading a llama.cpp `.gguf` file (architectures llama, qwen2, qwen3, gemma3) through MLX's
//! own GGUF reader (`mlx_rs::io::GgufFile` over `mlx_load_gguf`): Q4_0/Q4_1/Q8_0 tensors come
//! back as MLX affine-quantized triplets (`weight` uint32 + `scales` + `biases`, group size 32)
//! and stay quantized; F32/F16/BF16 (and the K-quants MLX can dequantize) load as dense arrays.
//! The HF-style config is synthesized from the GGUF metadata, tensor names are mapped to HF
//! names, llama.cpp's q/k row permutation (llama arch) is undone, Gemma's stored `1 + w` norm
//! weights are turned back into `w`, and floating tensors are kept in f32 compute form.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::io::{GgufError, GgufFile};
use mlx_rs::{ops, Array, Dtype};
use serde_json::{json, Map, Value};

use super::weights::WeightMap;
use super::{build_model, CausalModel, ModelConfig, ModelStats};
use crate::error::{EngineError, EngineResult};

pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];
/// MLX's GGUF reader quantizes Q4_0/Q4_1/Q8_0 in groups of 32.
const GGUF_GROUP: i64 = 32;

/// A parsed GGUF file: its metadata reader and tensors.
pub struct GgufModelFile {
    file: GgufFile,
    pub path: String,
}

fn gguf_err(path: &Path, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::model_load(format!("cannot {what} GGUF file {}: {e}", path.display())).with_detail("file", path.to_string_lossy().into_owned())
}

impl GgufModelFile {
    pub fn open(path: &Path) -> EngineResult<Self> {
        let file = GgufFile::load(path).map_err(|e| match e {
            GgufError::Exception(x) => gguf_err(path, "read", x.what()),
            other => gguf_err(path, "read", other),
        })?;
        Ok(GgufModelFile { file, path: path.to_string_lossy().into_owned() })
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.file.get_metadata_string(key).ok().flatten()
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.file.get_metadata_strings(key).ok().flatten()
    }

    pub fn array(&self, key: &str) -> Option<Array> {
        self.file.get_metadata_array(key).ok().flatten()
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        let a = self.array(key)?;
        (a.size() == 1).then(|| a.as_dtype(Dtype::Float64).ok()).flatten().map(|a| a.item_cast::<f64>())
    }

    pub fn i64(&self, key: &str) -> Option<i64> {
        self.f64(key).map(|v| v as i64)
    }

    pub fn architecture(&self) -> EngineResult<String> {
        let arch = self.string("general.architecture").ok_or_else(|| self.err("has no general.architecture"))?;
        if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(self.err(&format!("has unsupported architecture '{arch}' (supported: {})", GGUF_ARCHITECTURES.join(", "))));
        }
        Ok(arch)
    }

    pub fn err(&self, msg: &str) -> EngineError {
        EngineError::model_load(format!("GGUF file {} {msg}", self.path)).with_detail("file", self.path.clone())
    }
}

/// Loads the model of a GGUF file (weights evaluated now, so a truncated file fails here).
pub fn load_gguf_model(g: &GgufModelFile) -> EngineResult<(CausalModel, ModelStats)> {
    let arch = g.architecture()?;
    let mut raw = config_json(g, &arch)?;
    let tensors = g.file.arrays().map_err(|e| g.err(&format!("has unreadable tensors: {e}")))?;
    if tensors.contains_key("rope_freqs.weight") {
        return Err(g.err("uses per-frequency rope factors (rope_freqs), which this build does not support yet"));
    }
    let (weights, overrides) = map_tensors(g, &arch, &raw, tensors)?;
    if let Some(q) = overrides {
        raw["quantization"] = q;
    }
    let config = ModelConfig::from_value(raw)?;
    build_model(config, WeightMap::from_map(weights))
}

/// The config.json an HF export of this model would have, from the GGUF metadata.
fn config_json(g: &GgufModelFile, arch: &str) -> EngineResult<Value> {
    let k = |s: &str| format!("{arch}.{s}");
    let need = |s: &str| g.i64(&k(s)).ok_or_else(|| g.err(&format!("has no {arch}.{s}")));
    let vocab = g.strings("tokenizer.ggml.tokens").map(|t| t.len() as i64).or_else(|| g.i64(&k("vocab_size")));
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let head_dim = g.i64(&k("attention.key_length")).or_else(|| g.i64(&k("rope.dimension_count"))).unwrap_or(hidden / heads.max(1));
    let mut c = json!({
        "model_type": if arch == "gemma3" { "gemma3_text" } else { arch },
        "hidden_size": hidden,
        "intermediate_size": need("feed_forward_length")?,
        "num_hidden_layers": need("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": g.i64(&k("attention.head_count_kv")).unwrap_or(heads),
        "head_dim": head_dim,
        "vocab_size": vocab.ok_or_else(|| g.err("has no tokenizer.ggml.tokens"))?,
        "rms_norm_eps": g.f64(&k("attention.layer_norm_rms_epsilon")).map(|e| e as f32).unwrap_or(1e-6),
    });
    let o = c.as_object_mut().unwrap();
    if let Some(base) = g.f64(&k("rope.freq_base")) {
        o.insert("rope_theta".into(), json!(base as f32));
    }
    if let Some(ctx) = g.i64(&k("context_length")) {
        o.insert("max_position_embeddings".into(), json!(ctx));
    }
    if g.string(&k("rope.scaling.type")).as_deref() == Some("linear") {
        o.insert("rope_scaling".into(), json!({"rope_type": "linear", "factor": g.f64(&k("rope.scaling.factor")).unwrap_or(1.0)}));
    }
    for (key, meta) in [("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id")] {
        if let Some(v) = g.i64(meta) {
            o.insert(key.into(), json!(v));
        }
    }
    if arch == "gemma3" {
        o.insert("sliding_window".into(), json!(g.i64(&k("attention.sliding_window")).unwrap_or(512)));
        o.insert("sliding_window_pattern".into(), json!(6));
        o.insert("query_pre_attn_scalar".into(), json!(head_dim));
        o.insert("rope_local_base_freq".into(), json!(10000.0));
    }
    Ok(c)
}

fn hf_name(arch: &str, gguf: &str) -> Option<String> {
    let (base, suffix) = gguf.rsplit_once('.')?;
    if let Some(rest) = base.strip_prefix("blk.") {
        let (layer, kind) = rest.split_once('.')?;
        let module = match kind {
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            "attn_norm" => "input_layernorm",
            "ffn_norm" if arch == "gemma3" => "pre_feedforward_layernorm",
            "ffn_norm" => "post_attention_layernorm",
            "post_attention_norm" => "post_attention_layernorm",
            "post_ffw_norm" => "post_feedforward_layernorm",
            _ => return None,
        };
        return Some(format!("model.layers.{layer}.{module}.{suffix}"));
    }
    let module = match base {
        "token_embd" => "model.embed_tokens",
        "output_norm" => "model.norm",
        "output" => "lm_head",
        _ => return None,
    };
    Some(format!("{module}.{suffix}"))
}

type Mapped = (HashMap<String, Array>, Option<Value>);

/// HF-named tensors plus the `quantization` section (4-bit default, per-module overrides).
fn map_tensors(g: &GgufModelFile, arch: &str, cfg: &Value, tensors: HashMap<String, Array>) -> EngineResult<Mapped> {
    let heads = cfg["num_attention_heads"].as_i64().unwrap_or(1) as i32;
    let kv_heads = cfg["num_key_value_heads"].as_i64().unwrap_or(1) as i32;
    let mut out = HashMap::new();
    let mut bits_of: Map<String, Value> = Map::new();
    let mx = |e: mlx_rs::error::Exception| g.err(&format!("has a malformed tensor: {}", e.what()));
    for (name, a) in tensors {
        let Some(hf) = hf_name(arch, &name) else { continue };
        let mut a = if a.dtype() == Dtype::Uint32 { a } else { a.as_dtype(Dtype::Float32).map_err(mx)? };
        if arch == "llama" && (hf.contains("self_attn.q_proj.") || hf.contains("self_attn.k_proj.")) && !hf.ends_with(".bias") {
            a = unpermute(&a, if hf.contains("q_proj") { heads } else { kv_heads }).map_err(mx)?;
        }
        if arch == "gemma3" && hf.contains("norm.weight") {
            a = ops::subtract(&a, &Array::from_f32(1.0)).map_err(mx)?;
        }
        out.insert(hf, a);
    }
    for (name, w) in &out {
        let Some(module) = name.strip_suffix(".weight") else { continue };
        let Some(s) = out.get(&format!("{module}.scales")) else { continue };
        let in_features = *s.shape().last().unwrap_or(&0) as i64 * GGUF_GROUP;
        let packed = *w.shape().last().unwrap_or(&0) as i64;
        let bits = if in_features > 0 { packed * 32 / in_features } else { 0 };
        bits_of.insert(module.to_owned(), json!({"group_size": GGUF_GROUP, "bits": bits}));
    }
    if bits_of.is_empty() {
        return Ok((out, None));
    }
    let mut q = Map::new();
    q.insert("group_size".into(), json!(GGUF_GROUP));
    q.insert("bits".into(), json!(4));
    q.extend(bits_of.into_iter().filter(|(_, v)| v["bits"] != json!(4)));
    Ok((out, Some(Value::Object(q))))
}

/// Inverse of llama.cpp's q/k row permutation: per head, rows were reordered from HF's
/// half-split rotary layout to interleaved pairs. Works on packed/scales/biases alike.
fn unpermute(w: &Array, heads: i32) -> Result<Array, mlx_rs::error::Exception> {
    let s = w.shape();
    let (rows, cols) = (s[0], s[1]);
    w.reshape(&[heads, rows / heads / 2, 2, cols])?.swap_axes(1, 2)?.reshape(&[rows, cols])
}

/// Whether a path names a `.gguf` file (by extension).
pub fn is_gguf_path(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}
