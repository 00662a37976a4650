//! The compute form of a model's weights (DESIGN.md decision 8). On the CPU backend MLX's kernels
//! for f16/bf16 and for f16-scaled quantized matmuls are slow on x86, and dense f32 matmuls go to
//! the optimized BLAS, so `auto` converts floating weights to f32 and dequantizes MLX-quantized
//! layers to dense f32 (measured faster than keeping them packed with f32 scales: see
//! bench/RESULTS-cpu.md). GPU backends keep weights as stored. `loadModel({computeDtype})`
//! overrides: `float32` (always convert) or `as-stored` (never).

use mlx_rs::{ops, Dtype};

use super::config::QuantizationConfig;
use super::linear::module_params;
use super::weights::WeightMap;
use crate::error::{EngineError, EngineResult};

/// The `computeDtype` load option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputeDtype {
    #[default]
    Auto,
    Float32,
    AsStored,
}

impl ComputeDtype {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(ComputeDtype::Auto),
            "float32" => Some(ComputeDtype::Float32),
            "as-stored" => Some(ComputeDtype::AsStored),
            _ => None,
        }
    }
}

/// What load does to the stored tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightPlan {
    /// f16/bf16 tensors (and quantization scales/biases) become f32.
    pub float_to_f32: bool,
    /// MLX-quantized layers become dense f32 weights.
    pub dequantize: bool,
}

impl WeightPlan {
    pub fn resolve(choice: ComputeDtype, device: &str) -> Self {
        let f32_form = match choice {
            ComputeDtype::Auto => device == "cpu",
            ComputeDtype::Float32 => true,
            ComputeDtype::AsStored => false,
        };
        WeightPlan { float_to_f32: f32_form, dequantize: f32_form && DEQUANTIZE_ON_F32 }
    }
}

/// Dense f32 beats packed 4-bit with f32 scales on the CPU backend (OpenBLAS sgemm vs MLX's
/// quantized kernel), for prefill and decode alike; the cost is memory (see bench/RESULTS-cpu.md).
/// `MLX_SERVING_CPU_QUANTIZED=keep` keeps layers packed (f32 scales) for memory-bound hosts.
const DEQUANTIZE_ON_F32: bool = true;

fn keep_packed_env() -> bool {
    std::env::var("MLX_SERVING_CPU_QUANTIZED").is_ok_and(|v| v == "keep")
}

/// Applies `plan` to the weights in place (lazily: the model's `eval_weights` materializes the
/// converted arrays and the stored ones are freed).
pub fn apply(plan: WeightPlan, w: &mut WeightMap, quant: Option<&QuantizationConfig>) -> EngineResult<()> {
    let err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("cannot convert weights: {}", e.what()));
    if plan.dequantize && !keep_packed_env() {
        if let Some(cfg) = quant {
            let prefixes: Vec<String> = w.names().filter_map(|k| k.strip_suffix(".scales")).map(str::to_owned).collect();
            for p in prefixes {
                let (gs, bits) = module_params(cfg, &p);
                let (Some(q), Some(s), Some(b)) = (w.get(&format!("{p}.weight")), w.get(&format!("{p}.scales")), w.get(&format!("{p}.biases"))) else {
                    continue; // load reports the missing tensor by name
                };
                let (s, b) = (s.as_dtype(Dtype::Float32).map_err(err)?, b.as_dtype(Dtype::Float32).map_err(err)?);
                let dense = ops::dequantize(q, &s, &b, gs, bits).map_err(err)?;
                w.insert(format!("{p}.weight"), dense);
                w.remove(&format!("{p}.scales"));
                w.remove(&format!("{p}.biases"));
            }
        }
    }
    if plan.float_to_f32 {
        let names: Vec<String> = w
            .names()
            .filter(|k| w.get(k).is_some_and(|a| matches!(a.dtype(), Dtype::Float16 | Dtype::Bfloat16)))
            .map(str::to_owned)
            .collect();
        for k in names {
            let a = w.get(&k).unwrap().as_dtype(Dtype::Float32).map_err(err)?;
            w.insert(k, a);
        }
    }
    Ok(())
}

/// The dtype the matmuls run in after `apply`: the embedding (or its scales) decides.
pub fn compute_dtype_name(w: &WeightMap) -> String {
    w.dtype_name()
}

/// Bytes the model's weights occupy.
pub fn weight_bytes(w: &WeightMap) -> u64 {
    w.names().filter_map(|k| w.get(k)).map(|a| a.nbytes() as u64).sum()
}
