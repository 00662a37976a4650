//! The vision-language families this build runs, behind one type the engine holds: each
//! family's image processor (run off the engine thread), its image-token bookkeeping and its
//! prefill/decode over the shared text `CausalModel`.

use std::path::Path;

use image::RgbImage;
use mlx_rs::Array;

use super::clip_preprocess::ClipProcessor;
use super::llava::Llava;
use super::preprocess::{preprocess, PixelPatches, ProcessorConfig};
use super::qwen2_vl::Qwen2Vl;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;
use crate::models::{CausalModel, ComputeDtype, ModelStats};

/// Every `model_type` [`VisionModel::load`] accepts.
pub const MODEL_TYPES: &[&str] = &["qwen2_vl", "qwen2_5_vl", "llava"];

pub enum VisionModel {
    Qwen2Vl(Qwen2Vl),
    Llava(Llava),
}

/// A model's image processor, cloned out of the engine thread to preprocess there.
#[derive(Debug, Clone)]
pub enum ImageProcessor {
    Qwen(ProcessorConfig),
    Clip(ClipProcessor),
}

impl ImageProcessor {
    pub fn preprocess(&self, img: &RgbImage) -> EngineResult<PixelPatches> {
        match self {
            ImageProcessor::Qwen(c) => preprocess(img, c),
            ImageProcessor::Clip(c) => c.preprocess(img),
        }
    }
}

fn model_type(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("model_type")?.as_str().map(str::to_string)
}

/// Whether `dir` holds a vision-language model this build runs.
pub fn is_vision_model_dir(dir: &Path) -> bool {
    model_type(dir).is_some_and(|t| MODEL_TYPES.contains(&t.as_str()))
}

impl VisionModel {
    /// Loads `dir` → (the vision part, the language model, its stats).
    pub fn load(dir: &Path, compute: ComputeDtype) -> EngineResult<(VisionModel, CausalModel, ModelStats)> {
        match model_type(dir).as_deref() {
            Some("llava") => Llava::load(dir, compute).map(|(v, lm, s)| (VisionModel::Llava(v), lm, s)),
            Some("qwen2_vl" | "qwen2_5_vl") => Qwen2Vl::load(dir, compute).map(|(v, lm, s)| (VisionModel::Qwen2Vl(v), lm, s)),
            other => Err(EngineError::model_load(format!(
                "not a supported vision model_type: '{}' (supported: {})",
                other.unwrap_or_default(),
                MODEL_TYPES.join(", ")
            ))),
        }
    }

    pub fn model_type(&self) -> &str {
        match self {
            VisionModel::Qwen2Vl(m) => &m.config.model_type,
            VisionModel::Llava(_) => "llava",
        }
    }

    pub fn image_token_id(&self) -> u32 {
        match self {
            VisionModel::Qwen2Vl(m) => m.config.image_token_id,
            VisionModel::Llava(m) => m.config.image_token_id,
        }
    }

    /// Whether a plain prompt lists the images before the text (mlx-vlm's order per family).
    pub fn images_first(&self) -> bool {
        match self {
            VisionModel::Qwen2Vl(m) => m.config.images_first(),
            VisionModel::Llava(_) => false,
        }
    }

    pub fn processor(&self) -> ImageProcessor {
        match self {
            VisionModel::Qwen2Vl(m) => ImageProcessor::Qwen(m.processor.clone()),
            VisionModel::Llava(m) => ImageProcessor::Clip(m.processor.clone()),
        }
    }

    /// Language-model tokens one preprocessed image takes.
    pub fn num_image_tokens(&self, img: &PixelPatches) -> usize {
        match self {
            VisionModel::Qwen2Vl(m) => img.num_tokens(m.processor.merge_size),
            VisionModel::Llava(m) => m.config.tokens_per_image(),
        }
    }

    /// Prompt with images → (last logits [1, vocab], the decode position delta).
    pub fn prefill(&self, lm: &CausalModel, tokens: &[u32], images: &[PixelPatches], cache: &mut [KvCache]) -> EngineResult<(Array, i64)> {
        match self {
            VisionModel::Qwen2Vl(m) => m.prefill(lm, tokens, images, cache),
            VisionModel::Llava(m) => m.prefill(lm, tokens, images, cache),
        }
    }

    pub fn decode(&self, lm: &CausalModel, token: &Array, cache: &mut [KvCache], delta: i64) -> EngineResult<Array> {
        match self {
            VisionModel::Qwen2Vl(m) => m.decode(lm, token, cache, delta),
            VisionModel::Llava(m) => m.decode(lm, token, cache),
        }
    }
}
