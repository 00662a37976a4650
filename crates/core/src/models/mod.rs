//! Model folders → runnable models. Owns config parsing, weight loading (dense and MLX-quantized)
//! and the architecture implementations. One file per architecture family.

pub mod causal;
pub mod config;
pub mod gemma3;
pub mod gguf;
pub mod linear;
pub mod llama;
pub mod rope;
pub mod weights;

use std::path::Path;

pub use causal::{CausalModel, Segment};
pub use config::{Architecture, ModelConfig};
pub use gemma3::Gemma3Model;
pub use llama::LlamaModel;
use weights::WeightMap;

use crate::error::{EngineError, EngineResult};

/// Loads the language model in `dir` (config.json + safetensors) and materializes its weights,
/// so a truncated or unreadable file fails here, at load time, not at the first token.
pub fn load_language_model(dir: &Path) -> EngineResult<(CausalModel, ModelStats)> {
    let config = ModelConfig::from_dir(dir)?;
    let mut weights = WeightMap::load_dir(dir)?;
    if let Some(prefix) = &config.weight_prefix {
        weights.keep_prefixed(prefix);
    }
    build_model(config, weights)
}

/// Builds the architecture `config` names from `weights` and materializes them.
pub fn build_model(config: ModelConfig, weights: WeightMap) -> EngineResult<(CausalModel, ModelStats)> {
    let stats = ModelStats { parameter_count: weights.parameter_count(), dtype: weights.dtype_name() };
    let model = match config.architecture {
        Architecture::Llama => CausalModel::Llama(LlamaModel::load(config, &weights)?),
        Architecture::Gemma3 => CausalModel::Gemma3(Gemma3Model::load(config, &weights)?),
    };
    drop(weights);
    model.eval_weights().map_err(|e| EngineError::model_load(format!("cannot materialize weights: {}", e.what())))?;
    Ok((model, stats))
}

#[derive(Debug, Clone)]
pub struct ModelStats {
    pub parameter_count: u64,
    pub dtype: String,
}
