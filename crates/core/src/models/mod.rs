//! Model folders → runnable models. Owns config parsing, weight loading (dense and MLX-quantized)
//! and the architecture implementations. One file per architecture family.

pub(crate) mod activation;
pub(crate) mod attention;
pub mod causal;
pub mod compute;
pub mod config;
pub(crate) mod cuda_kernel;
pub mod fused_decode;
pub mod gemma3;
pub mod gguf;
pub mod gguf_file;
pub mod gguf_quants;
pub mod linear;
pub mod llama;
pub mod moe;
pub mod phi3;
pub mod qwen3_moe;
pub mod range_attention;
pub mod rope;
pub mod rows_matmul;
pub(crate) mod sdpa;
pub mod weights;

use std::path::Path;

pub use causal::{CausalModel, Segment};
pub use compute::{ComputeDtype, WeightPlan};
pub use config::{Architecture, ModelConfig};
pub use gemma3::Gemma3Model;
pub use llama::LlamaModel;
pub use phi3::Phi3Model;
pub use qwen3_moe::MoeModel;
use weights::WeightMap;

use crate::error::{EngineError, EngineResult};

/// Loads the language model in `dir` (config.json + safetensors) in the backend's fastest
/// compute form (`ComputeDtype::Auto`) and materializes its weights.
pub fn load_language_model(dir: &Path) -> EngineResult<(CausalModel, ModelStats)> {
    load_language_model_with(dir, ComputeDtype::Auto)
}

/// Loads the model with the given compute dtype choice and materializes its weights, so a
/// truncated or unreadable file fails here, at load time, not at the first token.
pub fn load_language_model_with(dir: &Path, compute: ComputeDtype) -> EngineResult<(CausalModel, ModelStats)> {
    crate::services::blas::install_exit_guard();
    let config = ModelConfig::from_dir(dir)?;
    let mut weights = WeightMap::load_dir(dir)?;
    if let Some(prefix) = &config.weight_prefix {
        weights.keep_prefixed(prefix);
    }
    build_model_with(config, weights, compute)
}

/// Builds the architecture `config` names from `weights` (in the backend's compute form) and
/// materializes them.
pub fn build_model(config: ModelConfig, weights: WeightMap) -> EngineResult<(CausalModel, ModelStats)> {
    build_model_with(config, weights, ComputeDtype::Auto)
}

pub fn build_model_with(config: ModelConfig, mut weights: WeightMap, compute: ComputeDtype) -> EngineResult<(CausalModel, ModelStats)> {
    let stored_dtype = weights.dtype_name();
    let parameter_count = weights.parameter_count();
    if config.architecture == Architecture::Moe {
        qwen3_moe::sanitize(&config, &mut weights)?; // per-expert tensors → stacked, before conversion
    }
    let plan = WeightPlan::resolve(compute, crate::services::runtime_info::device());
    compute::apply(plan, &mut weights, config.quantization.as_ref())?;
    let stats = ModelStats {
        parameter_count,
        dtype: compute::compute_dtype_name(&weights),
        stored_dtype,
        memory_bytes: compute::weight_bytes(&weights),
        dequantized: plan.dequantize && config.quantization.is_some() && !weights.names().any(|k| k.ends_with(".scales")),
    };
    let model = match config.architecture {
        Architecture::Llama => CausalModel::Llama(LlamaModel::load(config, &weights)?),
        Architecture::Gemma3 => CausalModel::Gemma3(Gemma3Model::load(config, &weights)?),
        Architecture::Phi3 => CausalModel::Phi3(Phi3Model::load(config, &weights)?),
        Architecture::Moe => CausalModel::Moe(MoeModel::load(config, &weights)?),
    };
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
