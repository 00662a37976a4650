//! Parsing of a model folder's `config.json` into the typed configuration the forward passes
//! need (architecture-specific extras stay in `raw` and are read by the architecture). Unknown keys are ignored; missing required keys are load errors that
//! name the file and the key.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// The `model_type`s this build runs.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gemma3", "phi3", "qwen3_moe", "mixtral"];

/// The architecture implementation a `model_type` maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// llama, mistral, qwen2, qwen3
    Llama,
    /// gemma3_text (and gemma3's text model)
    Gemma3,
    /// phi3 (fused qkv / gate_up projections, su/longrope scaling, partial rotary)
    Phi3,
    /// qwen3_moe, mixtral: sparse mixture-of-experts MLPs (models/qwen3_moe.rs)
    Moe,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// `rope_type: linear`: positions divided by `factor`.
    Linear { factor: f32 },
    /// `rope_type: llama3`: per-frequency smooth scaling (Llama 3.1+).
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_max_position_embeddings: f32 },
    /// `type: su` / `longrope` (Phi-3 128k, Phi-3.5, Phi-4-mini): per-frequency factors and an
    /// attention factor from the context extension `max / original`.
    LongRope { long_factor: Vec<f32>, short_factor: Vec<f32>, original_max_position_embeddings: f32, max_position_embeddings: f32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    pub group_size: i32,
    pub bits: i32,
    /// Per-module overrides (`"model.layers.0.mlp.down_proj": {group_size, bits}` or `false`).
    pub overrides: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub model_type: String,
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub vocab_size: i32,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_traditional: bool,
    pub rope_scaling: RopeScaling,
    /// `None` when config.json does not say: then the presence of `lm_head.weight` decides.
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// qwen3: RMSNorm over each head's queries and keys before rotary embedding.
    pub qk_norm: bool,
    pub quantization: Option<QuantizationConfig>,
    pub context_length: Option<u32>,
    pub architecture: Architecture,
    /// Weight-name prefix of the language model inside a multimodal checkpoint
    /// (`language_model.` for gemma3), stripped at load time.
    pub weight_prefix: Option<String>,
    pub raw: Value,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: Option<i32>,
    num_hidden_layers: Option<i32>,
    intermediate_size: Option<i32>,
    num_attention_heads: Option<i32>,
    num_key_value_heads: Option<i32>,
    head_dim: Option<i32>,
    vocab_size: Option<i32>,
    rms_norm_eps: Option<f32>,
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_traditional: bool,
    rope_scaling: Option<Value>,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

impl ModelConfig {
    pub fn from_dir(dir: &Path) -> EngineResult<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::model_load(format!("cannot read config.json in {}: {e}", dir.display())))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::model_load(format!("config.json is not valid JSON: {e}")))?;
        Self::from_value(raw)
    }

    pub fn from_value(raw: Value) -> EngineResult<Self> {
        let (raw, weight_prefix) = flatten_text_config(raw);
        let cfg: RawConfig = serde_json::from_value(raw.clone())
            .map_err(|e| EngineError::model_load(format!("config.json has an invalid field: {e}")))?;
        let model_type = cfg
            .model_type
            .ok_or_else(|| EngineError::model_load("config.json has no model_type"))?;
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(EngineError::model_load(format!(
                "unsupported model_type '{model_type}' in config.json (supported: {})",
                SUPPORTED_MODEL_TYPES.join(", ")
            ))
            .with_detail("modelType", model_type));
        }
        let need = |v: Option<i32>, key: &str| {
            v.filter(|n| *n > 0)
                .ok_or_else(|| EngineError::model_load(format!("config.json: missing or invalid '{key}'")))
        };
        let hidden_size = need(cfg.hidden_size, "hidden_size")?;
        let heads = need(cfg.num_attention_heads, "num_attention_heads")?;
        let kv_heads = cfg.num_key_value_heads.unwrap_or(heads);
        if kv_heads <= 0 || heads % kv_heads != 0 {
            return Err(EngineError::model_load("config.json: num_attention_heads must be a multiple of num_key_value_heads"));
        }
        let gemma = model_type == "gemma3_text";
        // phi3 and mixtral always split the hidden size evenly over the heads (as mlx-lm).
        let even_heads = matches!(model_type.as_str(), "phi3" | "mixtral");
        let head_dim = if even_heads { hidden_size / heads } else { cfg.head_dim.unwrap_or(if gemma { 256 } else { hidden_size / heads }) };
        let is_qwen2 = model_type == "qwen2";
        Ok(ModelConfig {
            hidden_size,
            num_hidden_layers: need(cfg.num_hidden_layers, "num_hidden_layers")?,
            intermediate_size: need(cfg.intermediate_size, "intermediate_size")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size: need(cfg.vocab_size, "vocab_size")?,
            rms_norm_eps: cfg.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: cfg.rope_theta.unwrap_or(if gemma { 1_000_000.0 } else { 10000.0 }),
            rope_traditional: cfg.rope_traditional,
            rope_scaling: parse_rope_scaling(cfg.rope_scaling.as_ref(), &raw)?,
            tie_word_embeddings: cfg.tie_word_embeddings,
            attention_bias: cfg.attention_bias || is_qwen2,
            mlp_bias: cfg.mlp_bias,
            qk_norm: matches!(model_type.as_str(), "qwen3" | "qwen3_moe"),
            quantization: parse_quantization(&raw)?,
            context_length: context_length(&raw),
            architecture: match model_type.as_str() {
                "gemma3_text" => Architecture::Gemma3,
                "phi3" => Architecture::Phi3,
                "qwen3_moe" | "mixtral" => Architecture::Moe,
                _ => Architecture::Llama,
            },
            weight_prefix,
            model_type,
            raw,
        })
    }
}

/// gemma3 (multimodal) keeps the language model's settings in `text_config` and its weights
/// under `language_model.`: run that text model (mlx-lm's defaults: vocab 262208, 8 heads,
/// 4 KV heads). Other configs pass through unchanged.
fn flatten_text_config(raw: Value) -> (Value, Option<String>) {
    let is_gemma3 = raw.get("model_type").and_then(Value::as_str) == Some("gemma3");
    let Some(text) = raw.get("text_config").and_then(Value::as_object).filter(|_| is_gemma3) else {
        return (raw, None);
    };
    let mut flat = text.clone();
    flat.insert("model_type".into(), "gemma3_text".into());
    flat.insert("vocab_size".into(), raw.get("vocab_size").cloned().unwrap_or(262208.into()));
    flat.entry("num_attention_heads").or_insert(8.into());
    flat.entry("num_key_value_heads").or_insert(4.into());
    for key in ["quantization", "quantization_config", "eos_token_id", "bos_token_id"] {
        if let Some(v) = raw.get(key) {
            flat.entry(key).or_insert(v.clone());
        }
    }
    (Value::Object(flat), Some("language_model.".into()))
}

fn parse_rope_scaling(v: Option<&Value>, raw: &Value) -> EngineResult<RopeScaling> {
    let Some(obj) = v.and_then(Value::as_object) else { return Ok(RopeScaling::None) };
    let kind = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str, d: f32| obj.get(k).and_then(Value::as_f64).map(|x| x as f32).unwrap_or(d);
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor", 1.0) }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor", 1.0),
            low_freq_factor: num("low_freq_factor", 1.0),
            high_freq_factor: num("high_freq_factor", 4.0),
            original_max_position_embeddings: num("original_max_position_embeddings", 8192.0),
        }),
        "su" | "longrope" => parse_longrope(obj, raw),
        other => Err(EngineError::model_load(format!("config.json: unsupported rope_scaling type '{other}'"))),
    }
}

/// Phi-3's su/longrope: `long_factor` (required), `short_factor`, and the original and extended
/// context lengths (top-level keys as Phi-3 configs have them, else inside rope_scaling).
fn parse_longrope(obj: &serde_json::Map<String, Value>, raw: &Value) -> EngineResult<RopeScaling> {
    let factors = |k: &str| -> EngineResult<Vec<f32>> {
        match obj.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| EngineError::model_load(format!("config.json: rope_scaling.{k} must be a list of numbers"))),
            Some(x) => x
                .as_f64()
                .map(|f| vec![f as f32])
                .ok_or_else(|| EngineError::model_load(format!("config.json: rope_scaling.{k} must be a list of numbers"))),
        }
    };
    let long_factor = factors("long_factor")?;
    if long_factor.is_empty() {
        return Err(EngineError::model_load("config.json: rope_scaling of type su/longrope needs 'long_factor'"));
    }
    let ctx = |k: &str, d: f64| raw.get(k).or_else(|| obj.get(k)).and_then(Value::as_f64).unwrap_or(d) as f32;
    Ok(RopeScaling::LongRope {
        long_factor,
        short_factor: factors("short_factor")?,
        original_max_position_embeddings: ctx("original_max_position_embeddings", 4096.0),
        max_position_embeddings: ctx("max_position_embeddings", 131072.0),
    })
}

fn parse_quantization(raw: &Value) -> EngineResult<Option<QuantizationConfig>> {
    let q = raw.get("quantization").or_else(|| raw.get("quantization_config"));
    let Some(obj) = q.and_then(Value::as_object) else { return Ok(None) };
    if let Some(mode) = obj.get("mode").and_then(Value::as_str) {
        if mode != "affine" {
            return Err(EngineError::model_load(format!("config.json: unsupported quantization mode '{mode}'")));
        }
    }
    let group_size = obj.get("group_size").and_then(Value::as_i64).unwrap_or(64) as i32;
    let bits = obj.get("bits").and_then(Value::as_i64).unwrap_or(4) as i32;
    if ![2, 3, 4, 5, 6, 8].contains(&bits) || group_size <= 0 {
        return Err(EngineError::model_load(format!("config.json: unsupported quantization bits={bits} group_size={group_size}")));
    }
    let overrides = obj
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "group_size" | "bits" | "mode"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Some(QuantizationConfig { group_size, bits, overrides }))
}

/// Spec §8.1: first present of these keys.
fn context_length(raw: &Value) -> Option<u32> {
    ["max_position_embeddings", "n_ctx", "max_sequence_length", "context_length", "model_max_length"]
        .iter()
        .find_map(|k| raw.get(*k).and_then(Value::as_u64))
        .map(|n| n.min(u32::MAX as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100})
    }

    #[test]
    fn parses_defaults() {
        let c = ModelConfig::from_value(base()).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_scaling, RopeScaling::None);
        assert_eq!(c.tie_word_embeddings, None);
        assert!(c.quantization.is_none());
    }

    #[test]
    fn rejects_unsupported_type_naming_it() {
        let mut v = base();
        v["model_type"] = json!("mamba");
        let e = ModelConfig::from_value(v).unwrap_err();
        assert!(e.message.contains("mamba"), "{}", e.message);
        assert_eq!(e.code, crate::error::ErrorCode::ModelLoadError);
    }

    #[test]
    fn parses_llama3_rope_and_quantization() {
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64});
        v["quantization"] = json!({"group_size": 32, "bits": 4, "lm_head": false});
        let c = ModelConfig::from_value(v).unwrap();
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        let q = c.quantization.unwrap();
        assert_eq!((q.group_size, q.bits), (32, 4));
        assert!(q.overrides.contains_key("lm_head"));
    }

    #[test]
    fn phi3_longrope_and_even_head_split() {
        let mut v = base();
        v["model_type"] = json!("phi3");
        v["head_dim"] = json!(99);
        v["original_max_position_embeddings"] = json!(4096);
        v["max_position_embeddings"] = json!(131072);
        v["rope_scaling"] = json!({"type": "su", "long_factor": [1.0, 2.5], "short_factor": [1.0, 1.1]});
        let c = ModelConfig::from_value(v.clone()).unwrap();
        assert_eq!((c.architecture, c.head_dim), (Architecture::Phi3, 16));
        match &c.rope_scaling {
            RopeScaling::LongRope { long_factor, original_max_position_embeddings, max_position_embeddings, .. } => {
                assert_eq!(long_factor, &vec![1.0, 2.5]);
                assert_eq!((*original_max_position_embeddings, *max_position_embeddings), (4096.0, 131072.0));
            }
            other => panic!("{other:?}"),
        }
        v["rope_scaling"] = json!({"type": "longrope", "short_factor": [1.0]});
        let e = ModelConfig::from_value(v).unwrap_err();
        assert!(e.message.contains("long_factor"), "{}", e.message);
    }

    #[test]
    fn moe_types_map_to_the_moe_family() {
        let mut v = base();
        v["model_type"] = json!("qwen3_moe");
        let c = ModelConfig::from_value(v.clone()).unwrap();
        assert!(c.architecture == Architecture::Moe && c.qk_norm);
        v["model_type"] = json!("mixtral");
        let c = ModelConfig::from_value(v).unwrap();
        assert!(c.architecture == Architecture::Moe && !c.qk_norm);
    }

    #[test]
    fn qwen_defaults() {
        let mut v = base();
        v["model_type"] = json!("qwen2");
        let c = ModelConfig::from_value(v).unwrap();
        assert!(c.attention_bias && !c.qk_norm);
    }
}
