//! Qwen2-VL (model_type `qwen2_vl`): vision tower (vision.rs) + Qwen2 language model with
//! M-RoPE (mrope.rs). Loading splits one checkpoint into the tower and an ordinary qwen2
//! [`CausalModel`]; generation with an image prefills through [`Qwen2Vl::prefill`] (image
//! features spliced into the token embeddings at the image-pad positions, 3-D positions) and
//! decodes through [`Qwen2Vl::decode`] (text positions shifted by the prompt's delta).

pub mod config;
pub mod mrope;
pub mod vision;

use std::path::Path;

use mlx_rs::Array;

use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;
use crate::models::weights::WeightMap;
use crate::models::{self, CausalModel, ComputeDtype, LlamaModel, ModelStats, WeightPlan};
use crate::vision::preprocess::{PixelPatches, ProcessorConfig};
use crate::vision::splice::splice_features;
pub use config::Qwen2VlConfig;
use vision::VisionTower;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

pub struct Qwen2Vl {
    pub config: Qwen2VlConfig,
    pub processor: ProcessorConfig,
    tower: VisionTower,
    inv_freq: Array,
}

/// Maps the checkpoint names of the known layouts onto ours: `vision_tower.*` for the tower
/// (mlx-community; HF's `visual.*` / `model.visual.*`), `model.*` + `lm_head.*` for the LM
/// (mlx-community's `language_model.model.*`; transformers 5's `model.language_model.*`).
fn canonical_name(k: &str) -> String {
    if let Some(r) = k.strip_prefix("vision_tower.").or_else(|| k.strip_prefix("model.visual.")).or_else(|| k.strip_prefix("visual.")) {
        return format!("vision_tower.{r}");
    }
    if let Some(r) = k.strip_prefix("language_model.") {
        return r.to_string();
    }
    if let Some(r) = k.strip_prefix("model.language_model.") {
        return format!("model.{r}");
    }
    k.to_string()
}

/// Splits a checkpoint into (language-model weights, vision-tower weights without prefix).
fn split_weights(all: WeightMap) -> (WeightMap, WeightMap) {
    let mut lm = std::collections::HashMap::new();
    let mut tower = std::collections::HashMap::new();
    let mut all = all;
    let names: Vec<String> = all.names().map(str::to_string).collect();
    for k in names {
        let a = all.remove(&k).expect("listed name");
        let c = canonical_name(&k);
        match c.strip_prefix("vision_tower.") {
            Some(r) => {
                tower.insert(r.to_string(), a);
            }
            None => {
                lm.insert(c, a);
            }
        }
    }
    (WeightMap::from_map(lm), WeightMap::from_map(tower))
}

impl Qwen2Vl {
    /// Loads `dir` → (the vision part, the language model, its stats).
    pub fn load(dir: &Path, compute: ComputeDtype) -> EngineResult<(Qwen2Vl, CausalModel, ModelStats)> {
        let raw = read_config(dir)?;
        let config = Qwen2VlConfig::from_value(&raw)?;
        let processor = ProcessorConfig::from_dir(dir)?;
        if processor.patch_size as i32 != config.vision.patch_size
            || processor.merge_size as i32 != config.vision.spatial_merge_size
            || processor.temporal_patch_size as i32 != config.vision.temporal_patch_size
        {
            return Err(EngineError::model_load("preprocessor_config.json patch/merge/temporal sizes differ from config.json's vision_config"));
        }
        let (lm_w, mut tower_w) = split_weights(WeightMap::load_dir(dir)?);
        if tower_w.names().next().is_none() {
            return Err(EngineError::model_load("checkpoint has no vision tower weights (vision_tower.* / visual.*)"));
        }
        let (lm, mut stats) = models::build_model_with(config.text.clone(), lm_w, compute)?;
        let tower_params = tower_w.parameter_count();
        let plan = WeightPlan::resolve(compute, crate::services::runtime_info::device());
        models::compute::apply(plan, &mut tower_w, config.text.quantization.as_ref())?;
        let tower = VisionTower::load(config.vision.clone(), &tower_w, config.text.quantization.as_ref())?;
        stats.parameter_count += tower_params;
        stats.memory_bytes += models::compute::weight_bytes(&tower_w);
        drop(tower_w);
        let load_err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("cannot materialize weights: {}", e.what()));
        let inv_freq = mrope::inv_freq(config.text.head_dim, config.text.rope_theta).map_err(load_err)?;
        let mut arrays = tower.arrays();
        arrays.push(inv_freq.clone());
        mlx_rs::transforms::eval(arrays.iter()).map_err(load_err)?;
        Ok((Qwen2Vl { config, processor, tower, inv_freq }, lm, stats))
    }

    fn llama<'a>(&self, lm: &'a CausalModel) -> MlxResult<&'a LlamaModel> {
        match lm {
            CausalModel::Llama(m) => Ok(m),
            _ => Err(mlx_rs::error::Exception::custom("Qwen2-VL language model must be the qwen2 decoder")),
        }
    }

    /// Merged features of one image [tokens, hidden].
    pub fn image_features(&self, img: &PixelPatches) -> MlxResult<Array> {
        let pixels = Array::from_slice(&img.data, &[img.rows as i32, img.cols as i32]);
        self.tower.forward(&pixels, img.grid_thw)
    }

    /// Runs the prompt `tokens` (image-pad runs already expanded to each image's token count)
    /// with `images` through the model into `cache` → (last-position logits [1, vocab], delta).
    pub fn prefill(&self, lm: &CausalModel, tokens: &[u32], images: &[PixelPatches], cache: &mut [KvCache]) -> EngineResult<(Array, i64)> {
        let c = &self.config;
        let merge = c.vision.spatial_merge_size as usize;
        let pads = tokens.iter().filter(|&&t| t == c.image_token_id).count();
        let feats: usize = images.iter().map(|i| i.num_tokens(merge)).sum();
        if pads != feats {
            return Err(EngineError::generation(format!(
                "The prompt has {pads} image tokens but the images produce {feats} features"
            )));
        }
        let grids: Vec<[usize; 3]> = images.iter().map(|i| i.grid_thw).collect();
        let positions = mrope::prompt_positions(tokens, &grids, c.image_token_id, c.vision_start_token_id, merge);
        let mut run = || -> MlxResult<Array> {
            let llama = self.llama(lm)?;
            let features = images.iter().map(|img| self.image_features(img)).collect::<MlxResult<Vec<_>>>()?;
            let h = splice_features(llama.embed(tokens)?, tokens, c.image_token_id, features)?;
            let rot = mrope::tables(&positions.pos, &self.inv_freq, c.mrope_section, h.dtype())?;
            llama.forward_embeddings(h, cache, Some(&rot))
        };
        let logits = run().map_err(|e| EngineError::generation(format!("vision prefill failed: {}", e.what())))?;
        Ok((logits, positions.delta))
    }

    /// One generated token at cache position `cache[0].offset()` → logits [1, vocab].
    pub fn decode(&self, lm: &CausalModel, token: &Array, cache: &mut [KvCache], delta: i64) -> EngineResult<Array> {
        let mut run = || -> MlxResult<Array> {
            let llama = self.llama(lm)?;
            let start = cache[0].offset() as i64 + delta;
            let h = llama.embed_ids(token)?;
            let rot = mrope::text_tables(start, 1, &self.inv_freq, self.config.mrope_section, h.dtype())?;
            llama.forward_embeddings(h, cache, Some(&rot))
        };
        run().map_err(|e| EngineError::generation(format!("vision decode failed: {}", e.what())))
    }
}

fn read_config(dir: &Path) -> EngineResult<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| EngineError::model_load(format!("cannot read config.json in {}: {e}", dir.display())))?;
    serde_json::from_str(&text).map_err(|e| EngineError::model_load(format!("config.json is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn maps_checkpoint_layouts() {
        assert_eq!(canonical_name("language_model.model.layers.0.mlp.up_proj.weight"), "model.layers.0.mlp.up_proj.weight");
        assert_eq!(canonical_name("language_model.lm_head.weight"), "lm_head.weight");
        assert_eq!(canonical_name("model.language_model.norm.weight"), "model.norm.weight");
        assert_eq!(canonical_name("visual.blocks.0.attn.qkv.weight"), "vision_tower.blocks.0.attn.qkv.weight");
        assert_eq!(canonical_name("model.visual.merger.ln_q.bias"), "vision_tower.merger.ln_q.bias");
        assert_eq!(canonical_name("model.embed_tokens.weight"), "model.embed_tokens.weight");
    }
}
