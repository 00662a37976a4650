//! Vision-language models (spec §7.12, issue #9): image inputs → pixels (image_input.rs,
//! resize.rs, preprocess.rs, clip_preprocess.rs; CPU work that runs off the engine thread) and
//! the model families that turn pixels plus a prompt into language-model inputs (qwen2_vl/,
//! llava/; model.rs is the engine's one type over them). The language model
//! itself is the text engine's `CausalModel`, so text-only generation on a vision model uses the
//! ordinary batched path.

mod activation;
pub mod clip_preprocess;
pub mod handle;
pub mod image_input;
pub mod preprocess;
pub mod llava;
pub mod model;
pub mod prompt;
pub mod qwen2_vl;
pub mod request;
pub mod resize;
mod splice;

pub use image_input::{ImageLimits, ImageSource};
pub use model::{ImageProcessor, VisionModel};
pub use preprocess::{PixelPatches, ProcessorConfig};

use std::rc::Rc;

use crate::error::{EngineError, EngineResult};
use crate::services::model_lifecycle::LoadedModel;

/// The prompt ids of a vision request on `model` (rendered with its chat template, image tokens
/// expanded to each image's feature count) and its vision part.
pub fn stream_prompt(model: &LoadedModel, prompt: &str, images: &[PixelPatches]) -> EngineResult<(Vec<u32>, Rc<VisionModel>)> {
    let vis = model
        .vision
        .clone()
        .ok_or_else(|| EngineError::model_not_loaded(format!("Model {} is not a vision model; load it with loadVisionModel", model.id)))?;
    let tok = &model.tokenizer;
    let image_token = tok
        .id_to_token(vis.image_token_id())
        .ok_or_else(|| EngineError::generation("the tokenizer has no image token"))?;
    let text = prompt::render_prompt(tok, tok.chat_template(), prompt, &image_token, images.len(), vis.images_first())?;
    let counts: Vec<usize> = images.iter().map(|i| vis.num_image_tokens(i)).collect();
    Ok((prompt::expand_and_encode(tok, &text, &image_token, &counts)?, vis))
}
