//! LLaVA `config.json` (model_type `llava`): a CLIP or SigLIP vision tower (`vision_config`),
//! the language model's settings (`text_config`: llama, mistral or qwen2) and how image features
//! are taken: `vision_feature_layer` (which hidden state of the tower; negative counts from the
//! end, the embedding output being state 0) and `vision_feature_select_strategy` (`default`
//! drops the first token — CLIP's class token; mlx-vlm drops a SigLIP tower's first patch the
//! same way — `full` keeps every token).

use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use crate::models::config::ModelConfig;

#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// `siglip_vision_model`: no class token, no LayerNorm before the encoder, a biased patch
    /// embedding, one position per patch. Otherwise CLIP (`clip_vision_model`).
    pub siglip: bool,
    pub num_hidden_layers: usize,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub image_size: i32,
    pub patch_size: i32,
    pub num_channels: i32,
    pub layer_norm_eps: f32,
}

#[derive(Debug, Clone)]
pub struct LlavaConfig {
    pub vision: ClipConfig,
    pub image_token_id: u32,
    /// Number of tower layers to run: the selected hidden state is the output of this many.
    pub feature_layers: usize,
    /// Keep every token of the selected state (`full`) or drop the first (`default`).
    pub keep_class_token: bool,
    pub text: ModelConfig,
}

fn err(msg: impl Into<String>) -> EngineError {
    EngineError::model_load(msg)
}

impl LlavaConfig {
    pub fn from_value(raw: &Value) -> EngineResult<Self> {
        if raw.get("model_type").and_then(Value::as_str) != Some("llava") {
            return Err(err("not a llava config"));
        }
        let mut text = raw.get("text_config").and_then(Value::as_object).cloned().ok_or_else(|| err("config.json has no text_config"))?;
        if !text.contains_key("model_type") {
            text.insert("model_type".into(), "llama".into());
        }
        // mlx-community checkpoints keep the quantization settings at the top level
        for k in ["quantization", "quantization_config"] {
            if let (false, Some(q)) = (text.contains_key(k), raw.get(k)) {
                text.insert(k.into(), q.clone());
            }
        }
        let text = ModelConfig::from_value(Value::Object(text))?;
        if !["llama", "mistral", "qwen2"].contains(&text.model_type.as_str()) {
            return Err(err(format!("llava: unsupported language model '{}' (llama, mistral, qwen2)", text.model_type)));
        }
        let v = raw.get("vision_config").ok_or_else(|| err("config.json has no vision_config"))?;
        let vt = v.get("model_type").and_then(Value::as_str).unwrap_or("clip_vision_model");
        if vt != "clip_vision_model" && vt != "siglip_vision_model" {
            return Err(err(format!("llava: unsupported vision tower '{vt}' (clip_vision_model, siglip_vision_model)")));
        }
        let siglip = vt == "siglip_vision_model";
        let int = |k: &str, d: i64| v.get(k).and_then(Value::as_i64).unwrap_or(d);
        let vision = ClipConfig {
            siglip,
            num_hidden_layers: int("num_hidden_layers", 24) as usize,
            hidden_size: int("hidden_size", 1024) as i32,
            intermediate_size: int("intermediate_size", 4096) as i32,
            num_attention_heads: int("num_attention_heads", 16) as i32,
            image_size: int("image_size", 336) as i32,
            patch_size: int("patch_size", 14) as i32,
            num_channels: int("num_channels", 3) as i32,
            layer_norm_eps: v.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(if siglip { 1e-6 } else { 1e-5 }) as f32,
        };
        if vision.num_hidden_layers == 0
            || vision.num_attention_heads <= 0
            || vision.hidden_size % vision.num_attention_heads != 0
            || vision.patch_size <= 0
            || vision.image_size % vision.patch_size != 0
            || vision.num_channels != 3
        {
            return Err(err("config.json: vision_config needs hidden_size divisible by num_attention_heads, image_size a multiple of patch_size, 3 channels"));
        }
        let layer = raw.get("vision_feature_layer").map(|l| l.as_i64().ok_or_else(|| err("llava: vision_feature_layer must be one integer"))).transpose()?.unwrap_or(-2);
        let states = vision.num_hidden_layers as i64 + 1;
        let idx = if layer < 0 { states + layer } else { layer };
        if !(0..states).contains(&idx) {
            return Err(err(format!("llava: vision_feature_layer {layer} is outside the tower's {states} hidden states")));
        }
        let keep_class_token = match raw.get("vision_feature_select_strategy").and_then(Value::as_str).unwrap_or("default") {
            "default" => false,
            "full" => true,
            other => return Err(err(format!("llava: unknown vision_feature_select_strategy '{other}'"))),
        };
        let image_token_id = raw.get("image_token_index").or_else(|| raw.get("image_token_id")).and_then(Value::as_u64).unwrap_or(32000) as u32;
        Ok(LlavaConfig { vision, image_token_id, feature_layers: idx as usize, keep_class_token, text })
    }

    /// Image features per image: the tower's tokens (patches, + CLIP's class token) less the
    /// first with `default`.
    pub fn tokens_per_image(&self) -> usize {
        let side = (self.vision.image_size / self.vision.patch_size) as usize;
        side * side + usize::from(!self.vision.siglip) - usize::from(!self.keep_class_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw() -> Value {
        json!({"model_type": "llava", "image_token_index": 151669,
               "text_config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000},
               "vision_config": {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 56, "patch_size": 14}})
    }

    #[test]
    fn feature_layer_and_strategy() {
        let c = LlavaConfig::from_value(&raw()).unwrap();
        // states: embeddings + 3 layers; -2 = the output of layer 2 of 3
        assert_eq!((c.feature_layers, c.keep_class_token, c.tokens_per_image()), (2, false, 16));
        assert_eq!(c.image_token_id, 151669);
        assert!(c.text.quantization.is_none());
        let mut q = raw();
        q["quantization"] = json!({"group_size": 64, "bits": 4});
        assert_eq!(LlavaConfig::from_value(&q).unwrap().text.quantization.map(|q| (q.group_size, q.bits)), Some((64, 4)));
        let mut r = raw();
        r["vision_feature_layer"] = json!(-1);
        r["vision_feature_select_strategy"] = json!("full");
        let c = LlavaConfig::from_value(&r).unwrap();
        assert_eq!((c.feature_layers, c.tokens_per_image()), (3, 17));
        r["vision_feature_layer"] = json!(-5);
        assert!(LlavaConfig::from_value(&r).is_err());
        r["vision_feature_layer"] = json!([-2, -3]);
        assert!(LlavaConfig::from_value(&r).unwrap_err().message.contains("one integer"));
        let mut r = raw();
        r["vision_config"]["model_type"] = json!("siglip_vision_model");
        r["vision_feature_select_strategy"] = json!("full");
        let c = LlavaConfig::from_value(&r).unwrap();
        // no class token: one feature per patch
        assert!(c.vision.siglip && c.vision.layer_norm_eps == 1e-6);
        assert_eq!(c.tokens_per_image(), 16);
        r["vision_feature_select_strategy"] = json!("default");
        assert_eq!(LlavaConfig::from_value(&r).unwrap().tokens_per_image(), 15);
        // Mistral and Qwen2 language models load as the same decoder; others are refused
        for lm in ["mistral", "qwen2"] {
            let mut m = raw();
            m["text_config"]["model_type"] = json!(lm);
            assert_eq!(LlavaConfig::from_value(&m).unwrap().text.model_type, lm);
        }
        let mut g = raw();
        g["text_config"]["model_type"] = json!("gemma3_text");
        assert!(LlavaConfig::from_value(&g).unwrap_err().message.contains("unsupported language model"));
        r["vision_config"]["model_type"] = json!("pixtral");
        assert!(LlavaConfig::from_value(&r).unwrap_err().message.contains("unsupported vision tower"));
    }
}
