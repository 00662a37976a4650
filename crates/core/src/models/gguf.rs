//! Loading a llama.cpp `.gguf` file (architectures llama, qwen2, qwen3, gemma3), read by our own
//! parser (`gguf_file.rs`; MLX's reader rejects whole files over one K-quant type):
//! Q4_0/Q4_1/Q8_0 tensors become MLX affine-quantized triplets (`weight` uint32 + f16 `scales` +
//! `biases`, group size 32, exactly as MLX's loader builds them) and stay quantized; every other
//! type (F32/F16/BF16, Q5_0/Q5_1, the K-quants Q2_K…Q6_K) is dequantized to f32 at load
//! (`gguf_quants.rs`). The HF-style config is synthesized from the GGUF metadata, tensor names
//! are mapped to HF names, llama.cpp's q/k row permutation (llama arch) is undone, Gemma's
//! stored `1 + w` norm weights are turned back into `w`, and floating tensors are kept in f32.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::{ops, Array, Dtype};
use serde_json::{json, Map, Value};

use super::gguf_file::{self, GgufData, MetaValue};
use super::gguf_quants;
use super::weights::WeightMap;
use super::{build_model, CausalModel, ModelConfig, ModelStats};
use crate::error::{EngineError, EngineResult};

pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3"];
/// Q4_0/Q4_1/Q8_0 blocks hold 32 values: one MLX quantization group each.
const GGUF_GROUP: i64 = 32;

/// A parsed GGUF file: its metadata and tensor table, and the bytes.
pub struct GgufModelFile {
    data: GgufData,
    pub path: String,
}

impl GgufModelFile {
    pub fn open(path: &Path) -> EngineResult<Self> {
        let path_s = path.to_string_lossy().into_owned();
        let fail = |msg: String| EngineError::model_load(format!("GGUF file {path_s} {msg}")).with_detail("file", path_s.clone());
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let data = gguf_file::parse(bytes).map_err(fail)?;
        Ok(GgufModelFile { data, path: path_s })
    }

    fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.data.metadata.get(key)
    }

    pub fn string(&self, key: &str) -> Option<String> {
        match self.meta(key)? {
            MetaValue::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn list(&self, key: &str) -> Option<&[MetaValue]> {
        match self.meta(key)? {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn strings(&self, key: &str) -> Option<Vec<String>> {
        self.list(key)?.iter().map(|v| if let MetaValue::Str(s) = v { Some(s.clone()) } else { None }).collect()
    }

    /// A numeric array (`tokenizer.ggml.scores`, `token_type`) as f64s.
    pub fn numbers(&self, key: &str) -> Option<Vec<f64>> {
        self.list(key)?.iter().map(MetaValue::as_f64).collect()
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.meta(key)? {
            MetaValue::Bool(b) => Some(*b),
            other => other.as_f64().map(|v| v != 0.0),
        }
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        self.meta(key)?.as_f64()
    }

    pub fn i64(&self, key: &str) -> Option<i64> {
        match self.meta(key)? {
            MetaValue::Int(i) => Some(*i),
            MetaValue::UInt(u) => i64::try_from(*u).ok(),
            other => other.as_f64().map(|v| v as i64),
        }
    }

    /// Every tensor as MLX arrays, keyed like MLX's loader: `<name>` (f32, or uint32 packed for
    /// Q4_0/Q4_1/Q8_0 plus `<base>.scales` / `<base>.biases`).
    pub fn arrays(&self) -> EngineResult<HashMap<String, Array>> {
        let mut out = HashMap::new();
        for t in &self.data.tensors {
            let raw = &self.data.bytes[t.start..t.start + t.len];
            let shape = t.shape();
            if let Some((words, scales, biases, bits)) = gguf_quants::to_affine(t.ggml_type, raw) {
                let (rows, cols) = (shape[..shape.len() - 1].to_vec(), shape[shape.len() - 1]);
                let with_last = |n: i32| rows.iter().copied().chain([n]).collect::<Vec<i32>>();
                let base = t.name.strip_suffix(".weight").unwrap_or(&t.name);
                out.insert(t.name.clone(), Array::from_slice(&words, &with_last(cols * bits / 32)));
                out.insert(format!("{base}.scales"), Array::from_slice(&scales, &with_last(cols / GGUF_GROUP as i32)));
                out.insert(format!("{base}.biases"), Array::from_slice(&biases, &with_last(cols / GGUF_GROUP as i32)));
            } else {
                out.insert(t.name.clone(), Array::from_slice(&gguf_quants::dequantize(t.ggml_type, raw), &shape));
            }
        }
        Ok(out)
    }

    /// The raw tensor table (name, ggml type, row-major shape), for tests and diagnostics.
    pub fn tensor_types(&self) -> Vec<(String, u32, Vec<i32>)> {
        self.data.tensors.iter().map(|t| (t.name.clone(), t.ggml_type, t.shape())).collect()
    }

    /// One tensor dequantized to f32 (row-major), whatever its stored type.
    pub fn dequantized(&self, name: &str) -> Option<Vec<f32>> {
        let t = self.data.tensors.iter().find(|t| t.name == name)?;
        Some(gguf_quants::dequantize(t.ggml_type, &self.data.bytes[t.start..t.start + t.len]))
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
    let tensors = g.arrays()?;
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
