//! Model folders → runnable models. Owns config parsing, weight loading (dense and MLX-quantized)
//! and the architecture implementations. One file per architecture family.

pub mod compute;
pub mod config;
pub mod linear;
pub mod llama;
pub mod rope;
pub mod weights;

use std::path::Path;

pub use compute::{ComputeDtype, WeightPlan};
pub use config::ModelConfig;
pub use llama::LlamaModel;
use weights::WeightMap;

use crate::error::{EngineError, EngineResult};

/// Loads the language model in `dir` (config.json + safetensors) in the backend's fastest
/// compute form (`ComputeDtype::Auto`) and materializes its weights.
pub fn load_language_model(dir: &Path) -> EngineResult<(LlamaModel, ModelStats)> {
    load_language_model_with(dir, ComputeDtype::Auto)
}

/// Loads the model with the given compute dtype choice and materializes its weights, so a
/// truncated or unreadable file fails here, at load time, not at the first token.
pub fn load_language_model_with(dir: &Path, compute: ComputeDtype) -> EngineResult<(LlamaModel, ModelStats)> {
    let config = ModelConfig::from_dir(dir)?;
    let mut weights = WeightMap::load_dir(dir)?;
    let stored_dtype = weights.dtype_name();
    let parameter_count = weights.parameter_count();
    let plan = WeightPlan::resolve(compute, crate::services::runtime_info::device());
    compute::apply(plan, &mut weights, config.quantization.as_ref())?;
    let stats = ModelStats {
        parameter_count,
        dtype: compute::compute_dtype_name(&weights),
        stored_dtype,
        memory_bytes: compute::weight_bytes(&weights),
        dequantized: plan.dequantize && config.quantization.is_some() && !weights.names().any(|k| k.ends_with(".scales")),
    };
    let model = LlamaModel::load(config, &weights)?;
    drop(weights);
    model.eval_weights().map_err(|e| EngineError::model_load(format!("cannot materialize weights: {}", e.what())))?;
    Ok((model, stats))
}

#[derive(Debug, Clone)]
pub struct ModelStats {
    pub parameter_count: u64,
    /// The dtype the model computes in (after the load-time conversion).
    pub dtype: String,
    /// The dtype in the model folder.
    pub stored_dtype: String,
    /// Bytes of weights held in memory.
    pub memory_bytes: u64,
    /// Quantized layers were expanded to dense weights at load.
    pub dequantized: bool,
}
