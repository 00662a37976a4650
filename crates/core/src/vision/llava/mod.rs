//! LLaVA (model_type `llava`): CLIP vision tower (clip.rs) + a two-layer GELU projector into
//! the language model's width + a llama language model. Loading splits the checkpoint into
//! the tower, the projector and an ordinary llama [`CausalModel`]; a prompt's image-token run
//! is replaced by the projected features of its image (one per patch), positions stay
//! sequential, so decoding is the plain language model's.

pub mod clip;
pub mod config;

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::Array;

use super::clip_preprocess::ClipProcessor;
use super::preprocess::PixelPatches;
use super::activation::gelu;
use super::splice::splice_features;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;
use crate::models::linear::Linear;
use crate::models::weights::WeightMap;
use crate::models::{self, CausalModel, ComputeDtype, LlamaModel, ModelStats, WeightPlan};
use clip::ClipTower;
pub use config::LlavaConfig;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

pub struct Llava {
    pub config: LlavaConfig,
    pub processor: ClipProcessor,
    tower: ClipTower,
    linear_1: Linear,
    linear_2: Linear,
}

enum Part {
    Tower,
    Projector,
    Lm,
}

/// Where a checkpoint tensor belongs, under our names: mlx-community / transformers 4
/// (`vision_tower.*`, `multi_modal_projector.*`, `language_model.model.*`,
/// `language_model.lm_head.*`) and transformers 5 (`model.vision_tower.*`,
/// `model.multi_modal_projector.*`, `model.language_model.*`, `lm_head.*`).
fn classify(k: &str) -> (Part, String) {
    let k = k.strip_prefix("model.").filter(|r| r.starts_with("vision_tower.") || r.starts_with("multi_modal_projector.")).unwrap_or(k);
    if let Some(r) = k.strip_prefix("vision_tower.") {
        return (Part::Tower, r.to_string());
    }
    if let Some(r) = k.strip_prefix("multi_modal_projector.") {
        return (Part::Projector, r.to_string());
    }
    if let Some(r) = k.strip_prefix("language_model.") {
        return (Part::Lm, r.to_string());
    }
    if let Some(r) = k.strip_prefix("model.language_model.") {
        return (Part::Lm, format!("model.{r}"));
    }
    (Part::Lm, k.to_string())
}

fn read_config(dir: &Path) -> EngineResult<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| EngineError::model_load(format!("cannot read config.json in {}: {e}", dir.display())))?;
    serde_json::from_str(&text).map_err(|e| EngineError::model_load(format!("config.json is not valid JSON: {e}")))
}

impl Llava {
    /// Loads `dir` → (the vision part, the language model, its stats).
    pub fn load(dir: &Path, compute: ComputeDtype) -> EngineResult<(Llava, CausalModel, ModelStats)> {
        let config = LlavaConfig::from_value(&read_config(dir)?)?;
        let processor = ClipProcessor::from_dir(dir, config.vision.patch_size as usize)?;
        let size = config.vision.image_size as usize;
        if processor.crop != (size, size) {
            return Err(EngineError::model_load(format!(
                "preprocessor_config.json crops to {:?} but the vision tower takes {size}x{size} images",
                processor.crop
            )));
        }
        let (mut parts, mut all) = ([HashMap::new(), HashMap::new(), HashMap::new()], WeightMap::load_dir(dir)?);
        let names: Vec<String> = all.names().map(str::to_string).collect();
        for k in names {
            let a = all.remove(&k).expect("listed name");
            let (part, name) = classify(&k);
            parts[part as usize].insert(name, a);
        }
        let [tower_w, proj_w, lm_w] = parts.map(WeightMap::from_map);
        let (mut tower_w, mut proj_w) = (tower_w, proj_w);
        if tower_w.names().next().is_none() || proj_w.names().next().is_none() {
            return Err(EngineError::model_load("checkpoint has no vision tower or projector weights (vision_tower.* / multi_modal_projector.*)"));
        }
        let (lm, mut stats) = models::build_model_with(config.text.clone(), lm_w, compute)?;
        let plan = WeightPlan::resolve(compute, crate::services::runtime_info::device());
        for w in [&mut tower_w, &mut proj_w] {
            models::compute::apply(plan, w, config.text.quantization.as_ref())?;
            stats.parameter_count += w.parameter_count();
            stats.memory_bytes += models::compute::weight_bytes(w);
        }
        let quant = config.text.quantization.as_ref();
        let tower = ClipTower::load(config.vision.clone(), &tower_w, config.feature_layers, quant)?;
        let linear_1 = Linear::load(&proj_w, "linear_1", quant, true)?;
        let linear_2 = Linear::load(&proj_w, "linear_2", quant, true)?;
        let load_err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("cannot materialize weights: {}", e.what()));
        let mut arrays = tower.arrays();
        for l in [&linear_1, &linear_2] {
            crate::models::causal::linear_arrays(l, &mut arrays);
        }
        mlx_rs::transforms::eval(arrays.iter()).map_err(load_err)?;
        Ok((Llava { config, processor, tower, linear_1, linear_2 }, lm, stats))
    }

    fn llama<'a>(&self, lm: &'a CausalModel) -> MlxResult<&'a LlamaModel> {
        match lm {
            CausalModel::Llama(m) => Ok(m),
            _ => Err(mlx_rs::error::Exception::custom("LLaVA's language model must be a llama decoder")),
        }
    }

    /// Projected features of one image [tokens, hidden].
    pub fn image_features(&self, img: &PixelPatches) -> MlxResult<Array> {
        let s = self.config.vision.image_size;
        let pixels = Array::from_slice(&img.data, &[3, s, s]);
        let hidden = self.tower.forward(&pixels)?;
        let selected = if self.config.keep_class_token { hidden } else { ClipTower::patch_rows(&hidden)? };
        self.linear_2.forward(&gelu(&self.linear_1.forward(&selected)?)?)
    }

    /// Runs the prompt `tokens` (each image's token run already expanded) with `images` into
    /// `cache` → last-position logits [1, vocab]. Position deltas are always 0.
    pub fn prefill(&self, lm: &CausalModel, tokens: &[u32], images: &[PixelPatches], cache: &mut [KvCache]) -> EngineResult<(Array, i64)> {
        let id = self.config.image_token_id;
        let pads = tokens.iter().filter(|&&t| t == id).count();
        let feats = images.len() * self.config.tokens_per_image();
        if pads != feats {
            return Err(EngineError::generation(format!("The prompt has {pads} image tokens but the images produce {feats} features")));
        }
        let mut run = || -> MlxResult<Array> {
            let llama = self.llama(lm)?;
            let features = images.iter().map(|img| self.image_features(img)).collect::<MlxResult<Vec<_>>>()?;
            let h = splice_features(llama.embed(tokens)?, tokens, id, features)?;
            // plain positions: the language model's own rope at the cache offset (as mlx-vlm's)
            llama.forward_embeddings(h, cache, None)
        };
        let logits = run().map_err(|e| EngineError::generation(format!("vision prefill failed: {}", e.what())))?;
        Ok((logits, 0))
    }

    /// One generated token → logits [1, vocab].
    pub fn decode(&self, lm: &CausalModel, token: &Array, cache: &mut [KvCache]) -> EngineResult<Array> {
        let mut run = || -> MlxResult<Array> {
            let llama = self.llama(lm)?;
            llama.forward_embeddings(llama.embed_ids(token)?, cache, None)
        };
        run().map_err(|e| EngineError::generation(format!("vision decode failed: {}", e.what())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(k: &str) -> (usize, String) {
        let (p, n) = classify(k);
        (p as usize, n)
    }

    #[test]
    fn maps_checkpoint_layouts() {
        assert_eq!(name("vision_tower.vision_model.pre_layrnorm.bias"), (0, "vision_model.pre_layrnorm.bias".into()));
        assert_eq!(name("model.vision_tower.vision_model.post_layernorm.weight"), (0, "vision_model.post_layernorm.weight".into()));
        assert_eq!(name("multi_modal_projector.linear_1.weight"), (1, "linear_1.weight".into()));
        assert_eq!(name("model.multi_modal_projector.linear_2.bias"), (1, "linear_2.bias".into()));
        assert_eq!(name("language_model.model.norm.weight"), (2, "model.norm.weight".into()));
        assert_eq!(name("language_model.lm_head.weight"), (2, "lm_head.weight".into()));
        assert_eq!(name("model.language_model.layers.0.mlp.up_proj.weight"), (2, "model.layers.0.mlp.up_proj.weight".into()));
        assert_eq!(name("lm_head.weight"), (2, "lm_head.weight".into()));
    }
}
