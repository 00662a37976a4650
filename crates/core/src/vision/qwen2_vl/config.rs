//! Qwen2-VL / Qwen2.5-VL `config.json`: the vision tower's `vision_config`, the special token
//! ids, the M-RoPE sections, and the language model's settings as an ordinary qwen2
//! [`ModelConfig`] (the LM is Qwen2 in both; M-RoPE reduces to plain rope for text-only
//! positions, so text generation on the model runs through the text engine unchanged).
//! The two differ in the tower only: Qwen2.5-VL names its width `hidden_size` (Qwen2-VL:
//! `embed_dim`) and its output `out_hidden_size`, uses RMSNorm + SwiGLU blocks and attends
//! within windows except in `fullatt_block_indexes`.

use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use crate::models::config::ModelConfig;

pub const MODEL_TYPES: &[&str] = &["qwen2_vl", "qwen2_5_vl"];

/// Which tower architecture the checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TowerKind {
    /// LayerNorm blocks, quick-GELU MLP, full attention everywhere.
    Qwen2Vl,
    /// RMSNorm blocks, SwiGLU MLP, window attention except in the full-attention blocks.
    Qwen25Vl,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub kind: TowerKind,
    pub depth: usize,
    pub embed_dim: i32,
    /// Output width of the patch merger (= the LM's hidden size).
    pub hidden_size: i32,
    pub num_heads: i32,
    pub in_chans: i32,
    pub patch_size: i32,
    pub spatial_merge_size: i32,
    pub temporal_patch_size: i32,
    /// Width of the blocks' MLP.
    pub intermediate_size: i32,
    /// Qwen2.5-VL: side of an attention window in pixels (see [`VisionConfig::window_units`]).
    pub window_size: i32,
    /// Qwen2.5-VL: blocks that attend over the whole image instead of windows.
    pub fullatt_block_indexes: Vec<usize>,
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
    /// Whether a plain prompt's user turn lists the images before the text (mlx-vlm's message
    /// format for the family: Qwen2.5-VL images first, Qwen2-VL text first).
    pub fn images_first(&self) -> bool {
        self.model_type == "qwen2_5_vl"
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
        // mlx-vlm's Qwen2.5-VL ties the embeddings unless the config says otherwise.
        if model_type == "qwen2_5_vl" && !text.contains_key("tie_word_embeddings") {
            text.insert("tie_word_embeddings".into(), true.into());
        }
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
        let vision = vision_config(raw.get("vision_config").ok_or_else(|| err("config.json has no vision_config"))?, text.hidden_size, &model_type)?;
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

impl VisionConfig {
    /// Side of an attention window in merged tokens (the reference floors both divisions).
    pub fn window_units(&self) -> usize {
        (self.window_size / self.spatial_merge_size / self.patch_size).max(0) as usize
    }
}

fn vision_config(v: &Value, lm_hidden: i32, model_type: &str) -> EngineResult<VisionConfig> {
    let int = |k: &str, d: i64| v.get(k).and_then(Value::as_i64).unwrap_or(d);
    let common = |kind, embed_dim: i64, hidden_size: i64, intermediate_size: i64| VisionConfig {
        kind,
        depth: int("depth", 32) as usize,
        embed_dim: embed_dim as i32,
        hidden_size: hidden_size as i32,
        num_heads: int("num_heads", 16) as i32,
        in_chans: v.get("in_chans").or_else(|| v.get("in_channels")).and_then(Value::as_i64).unwrap_or(3) as i32,
        patch_size: v.get("patch_size").or_else(|| v.get("spatial_patch_size")).and_then(Value::as_i64).unwrap_or(14) as i32,
        spatial_merge_size: int("spatial_merge_size", 2) as i32,
        temporal_patch_size: int("temporal_patch_size", 2) as i32,
        intermediate_size: intermediate_size as i32,
        window_size: 0,
        fullatt_block_indexes: vec![],
    };
    let c = if model_type == "qwen2_5_vl" {
        let mut c = common(TowerKind::Qwen25Vl, int("hidden_size", 1280), int("out_hidden_size", lm_hidden as i64), int("intermediate_size", 3420));
        c.window_size = int("window_size", 112) as i32;
        c.fullatt_block_indexes = match v.get("fullatt_block_indexes") {
            None => vec![7, 15, 23, 31],
            Some(Value::Array(a)) if a.iter().all(Value::is_u64) => a.iter().filter_map(Value::as_u64).map(|n| n as usize).collect(),
            Some(_) => return Err(err("config.json: vision_config.fullatt_block_indexes must be a list of block indexes")),
        };
        if c.patch_size <= 0 || c.spatial_merge_size <= 0 || c.window_units() == 0 {
            return Err(err(format!(
                "config.json: vision_config.window_size {} must be at least patch_size × spatial_merge_size = {}",
                c.window_size,
                c.patch_size * c.spatial_merge_size
            )));
        }
        c
    } else {
        let embed = int("embed_dim", 1280);
        let ratio = v.get("mlp_ratio").and_then(Value::as_f64).unwrap_or(4.0);
        common(TowerKind::Qwen2Vl, embed, int("hidden_size", lm_hidden as i64), (embed as f64 * ratio) as i64)
    };
    if c.depth == 0 || c.intermediate_size <= 0 || c.embed_dim <= 0 || c.num_heads <= 0 || c.embed_dim % c.num_heads != 0 || (c.embed_dim / c.num_heads) % 4 != 0 {
        return Err(err("config.json: vision_config needs embed_dim divisible by num_heads with head_dim a multiple of 4"));
    }
    if c.hidden_size != lm_hidden {
        return Err(err(format!(
            "config.json: the vision tower's output width {} (vision_config.{}) differs from the language model's hidden size {lm_hidden}",
            c.hidden_size,
            if c.kind == TowerKind::Qwen25Vl { "out_hidden_size" } else { "hidden_size" }
        )));
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

    fn raw_2_5() -> Value {
        let mut r = raw();
        r["model_type"] = json!("qwen2_5_vl");
        r["vision_config"] = json!({"depth": 3, "hidden_size": 32, "out_hidden_size": 64, "intermediate_size": 48,
                                    "num_heads": 2, "window_size": 56, "fullatt_block_indexes": [1]});
        r
    }

    #[test]
    fn parses_qwen2_5_vl_tower_names() {
        let c = Qwen2VlConfig::from_value(&raw_2_5()).unwrap();
        let v = &c.vision;
        assert_eq!(v.kind, TowerKind::Qwen25Vl);
        assert_eq!((v.embed_dim, v.hidden_size, v.intermediate_size), (32, 64, 48));
        assert_eq!((v.window_size, v.fullatt_block_indexes.clone()), (56, vec![1]));
        assert_eq!(c.text.tie_word_embeddings, Some(true));
        let q2 = Qwen2VlConfig::from_value(&raw()).unwrap();
        assert_eq!((q2.vision.kind, q2.vision.intermediate_size), (TowerKind::Qwen2Vl, 128));
        assert_eq!(q2.text.tie_word_embeddings, None);
        let mut r = raw_2_5();
        r["vision_config"]["window_size"] = json!(20);
        assert!(Qwen2VlConfig::from_value(&r).unwrap_err().message.contains("window_size"));
        r["vision_config"]["window_size"] = json!(56);
        r["vision_config"]["out_hidden_size"] = json!(32);
        assert!(Qwen2VlConfig::from_value(&r).unwrap_err().message.contains("hidden size"));
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
