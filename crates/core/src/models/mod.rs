//! Model folders → runnable models. Owns config parsing, weight loading (dense and MLX-quantized)
//! and the architecture implementations. One file per architecture family.

pub mod config;
pub mod linear;
pub mod llama;
pub mod rope;
pub mod weights;

use std::path::Path;

pub use config::ModelConfig;
pub use llama::LlamaModel;
use weights::WeightMap;

use crate::error::{EngineError, EngineResult};

/// Loads the language model in `dir` (config.json + safetensors) and materializes its weights,
/// so a truncated or unreadable file fails here, at load time, not at the first token.
pub fn load_language_model(dir: &Path) -> EngineResult<(LlamaModel, ModelStats)> {
    let config = ModelConfig::from_dir(dir)?;
    let weights = WeightMap::load_dir(dir)?;
    let stats = ModelStats { parameter_count: weights.parameter_count(), dtype: weights.dtype_name() };
    let model = LlamaModel::load(config, &weights)?;
    drop(weights);
    model.eval_weights().map_err(|e| EngineError::model_load(format!("cannot materialize weights: {}", e.what())))?;
    Ok((model, stats))
}

#[derive(Debug, Clone)]
pub struct ModelStats {
    pub parameter_count: u64,
    pub dtype: String,
}
