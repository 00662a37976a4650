//! Qwen2-VL `config.json`: the vision tower's `vision_config`, the special token ids, the M-RoPE
//! sections, and the language model's settings as an ordinary qwen2 [`ModelConfig`] (the LM is
//! Qwen2; M-RoPE reduces to plain rope for text-only positions, so text generation on the
//! model runs through the text engine unchanged).

use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use crate::models::config::ModelConfig;

pub const MODEL_TYPES: &[&str] = &["qwen2_vl"];

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub embed_dim: i32,
    /// Output width of the patch merger (= the LM's hidden size).
    pub hidden_size: i32,
    pub num_heads: i32,
    pub mlp_ratio: f64,
    pub in_chans: i32,
    pub patch_size: i32,
    pub spatial_merge_size: i32,
    pub temporal_patch_size: i32,
}

#[derive(Debug, Clone)]
pub struct Qwen2VlConfig {
    pub model_type: String,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    /// Rotary frequencies given to the temporal, height and width positions.
    pub mrope_section: [usize; 3],
    pub text: ModelConfig,
}

fn err(msg: impl Into<String>) -> EngineError {
    EngineError::model_load(msg)
}

impl Qwen2VlConfig {
    pub fn is_vision_config(raw: &Value) -> bool {
        raw.get("model_type").and_then(Value::as_str).is_some_and(|t| MODEL_TYPES.contains(&t))
    }

    pub fn from_value(raw: &Value) -> EngineResult<Self> {
        let model_type = raw.get("model_type").and_then(Value::as_str).unwrap_or_default().to_string();
        if !MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(err(format!("not a supported vision model_type: '{model_type}' (supported: {})", MODEL_TYPES.join(", "))));
        }
        // Newer checkpoints nest the language model's settings under text_config.
        let mut text = raw.as_object().cloned().unwrap_or_default();
        if let Some(tc) = raw.get("text_config").and_then(Value::as_object) {
            for (k, v) in tc {
                text.insert(k.clone(), v.clone());
            }
        }
        let mrope = text
            .get("rope_scaling")
            .and_then(|r| r.get("mrope_section"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|n| n as usize).collect::<Vec<_>>())
            .unwrap_or_else(|| vec![16, 24, 24]);
        let mrope_section: [usize; 3] = mrope.try_into().map_err(|_| err("config.json: rope_scaling.mrope_section must have 3 entries"))?;
        text.insert("model_type".into(), "qwen2".into());
        // M-RoPE is applied by the vision path; for text positions it equals the default rope.
        text.remove("rope_scaling");
        text.remove("vision_config");
        text.remove("text_config");
        let text = ModelConfig::from_value(Value::Object(text))?;
        let head_half = (text.head_dim / 2) as usize;
        if mrope_section.iter().sum::<usize>() != head_half {
            return Err(err(format!(
                "config.json: mrope_section {mrope_section:?} must sum to head_dim / 2 = {head_half}"
            )));
        }
        let vision = vision_config(raw.get("vision_config").ok_or_else(|| err("config.json has no vision_config"))?, text.hidden_size)?;
        let id = |k: &str, d: u32| raw.get(k).and_then(Value::as_u64).map(|n| n as u32).unwrap_or(d);
        Ok(Qwen2VlConfig {
            model_type,
            vision,
            image_token_id: id("image_token_id", 151655),
            video_token_id: id("video_token_id", 151656),
            vision_start_token_id: id("vision_start_token_id", 151652),
            mrope_section,
            text,
        })
    }
}

fn vision_config(v: &Value, lm_hidden: i32) -> EngineResult<VisionConfig> {
    let int = |k: &str, d: i64| v.get(k).and_then(Value::as_i64).unwrap_or(d);
    let c = VisionConfig {
        depth: int("depth", 32) as usize,
        embed_dim: int("embed_dim", 1280) as i32,
        hidden_size: int("hidden_size", lm_hidden as i64) as i32,
        num_heads: int("num_heads", 16) as i32,
        mlp_ratio: v.get("mlp_ratio").and_then(Value::as_f64).unwrap_or(4.0),
        in_chans: v.get("in_chans").or_else(|| v.get("in_channels")).and_then(Value::as_i64).unwrap_or(3) as i32,
        patch_size: v.get("patch_size").or_else(|| v.get("spatial_patch_size")).and_then(Value::as_i64).unwrap_or(14) as i32,
        spatial_merge_size: int("spatial_merge_size", 2) as i32,
        temporal_patch_size: int("temporal_patch_size", 2) as i32,
    };
    if c.depth == 0 || c.embed_dim <= 0 || c.num_heads <= 0 || c.embed_dim % c.num_heads != 0 || (c.embed_dim / c.num_heads) % 4 != 0 {
        return Err(err("config.json: vision_config needs embed_dim divisible by num_heads with head_dim a multiple of 4"));
    }
    if c.hidden_size != lm_hidden {
        return Err(err(format!("config.json: vision_config.hidden_size {} differs from the language model's {lm_hidden}", c.hidden_size)));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw() -> Value {
        json!({"model_type": "qwen2_vl", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
               "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
               "vision_config": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2}})
    }

    #[test]
    fn parses_the_fixture_shape() {
        let c = Qwen2VlConfig::from_value(&raw()).unwrap();
        assert_eq!(c.mrope_section, [4, 2, 2]);
        assert_eq!(c.text.model_type, "qwen2");
        assert!(c.text.attention_bias);
        assert_eq!(c.vision.patch_size, 14);
        assert_eq!(c.image_token_id, 151655);
    }

    #[test]
    fn rejects_bad_sections_and_text_models() {
        let mut r = raw();
        r["rope_scaling"]["mrope_section"] = json!([4, 4, 4]);
        assert!(Qwen2VlConfig::from_value(&r).unwrap_err().message.contains("mrope_section"));
        let mut r = raw();
        r["model_type"] = json!("qwen2");
        assert!(Qwen2VlConfig::from_value(&r).is_err());
        let mut r = raw();
        r.as_object_mut().unwrap().remove("vision_config");
        assert!(Qwen2VlConfig::from_value(&r).is_err());
    }
}
