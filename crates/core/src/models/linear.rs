//! Dense and MLX affine-quantized linear/embedding layers, built from a weight map.
//! A layer is quantized exactly when `<name>.scales` exists next to `<name>.weight`
//! (the mlx-community format); group size and bits come from config.json's `quantization`
//! (with per-module overrides), and are checked against the tensor shapes.

use mlx_rs::{ops, Array};

use super::config::QuantizationConfig;
use super::weights::WeightMap;
use crate::error::{EngineError, EngineResult};

#[derive(Clone)]
pub struct Quantized {
    pub weight: Array,
    pub scales: Array,
    pub biases: Array,
    pub group_size: i32,
    pub bits: i32,
}

#[derive(Clone)]
pub enum Linear {
    Dense { weight: Array, bias: Option<Array> },
    Quantized { q: Quantized, bias: Option<Array> },
}

impl Linear {
    /// `prefix` is the module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub fn load(w: &WeightMap, prefix: &str, quant: Option<&QuantizationConfig>, with_bias: bool) -> EngineResult<Self> {
        let bias = if with_bias { Some(w.require(&format!("{prefix}.bias"))?) } else { w.get(&format!("{prefix}.bias")).cloned() };
        match load_quantized(w, prefix, quant)? {
            Some(q) => Ok(Linear::Quantized { q, bias }),
            None => Ok(Linear::Dense { weight: w.require(&format!("{prefix}.weight"))?, bias }),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array, mlx_rs::error::Exception> {
        let (y, bias) = match self {
            Linear::Dense { weight, bias } => (ops::matmul(x, &weight.transpose()?)?, bias),
            Linear::Quantized { q, bias } => (
                ops::quantized_matmul(x, &q.weight, &q.scales, &q.biases, true, q.group_size, q.bits)?,
                bias,
            ),
        };
        match bias {
            Some(b) => ops::add(&y, b),
            None => Ok(y),
        }
    }
}

/// Token embedding table; doubles as the output projection when embeddings are tied.
#[derive(Clone)]
pub enum Embedding {
    Dense(Array),
    Quantized(Quantized),
}

impl Embedding {
    pub fn load(w: &WeightMap, prefix: &str, quant: Option<&QuantizationConfig>) -> EngineResult<Self> {
        match load_quantized(w, prefix, quant)? {
            Some(q) => Ok(Embedding::Quantized(q)),
            None => Ok(Embedding::Dense(w.require(&format!("{prefix}.weight"))?)),
        }
    }

    pub fn rows(&self) -> i32 {
        match self {
            Embedding::Dense(a) => a.shape()[0],
            Embedding::Quantized(q) => q.weight.shape()[0],
        }
    }

    /// ids: int32 [B, L] → [B, L, hidden]
    pub fn lookup(&self, ids: &Array) -> Result<Array, mlx_rs::error::Exception> {
        match self {
            Embedding::Dense(table) => table.take_axis(ids, 0),
            Embedding::Quantized(q) => {
                let w = q.weight.take_axis(ids, 0)?;
                let s = q.scales.take_axis(ids, 0)?;
                let b = q.biases.take_axis(ids, 0)?;
                ops::dequantize(&w, &s, &b, q.group_size, q.bits)
            }
        }
    }

    /// x: [.., hidden] → logits [.., vocab] (tied output projection).
    pub fn as_linear(&self, x: &Array) -> Result<Array, mlx_rs::error::Exception> {
        match self {
            Embedding::Dense(table) => ops::matmul(x, &table.transpose()?),
            Embedding::Quantized(q) => ops::quantized_matmul(x, &q.weight, &q.scales, &q.biases, true, q.group_size, q.bits),
        }
    }
}

fn load_quantized(w: &WeightMap, prefix: &str, quant: Option<&QuantizationConfig>) -> EngineResult<Option<Quantized>> {
    let scales_name = format!("{prefix}.scales");
    let Some(scales) = w.get(&scales_name).cloned() else { return Ok(None) };
    let Some(cfg) = quant else {
        return Err(EngineError::model_load(format!(
            "tensor '{scales_name}' is quantized but config.json has no 'quantization' section"
        )));
    };
    let (group_size, bits) = module_params(cfg, prefix);
    let weight = w.require(&format!("{prefix}.weight"))?;
    let biases = w.require(&format!("{prefix}.biases"))?;
    // Shape check: packed columns * 32 / bits == scales columns * group_size == in_features.
    let packed = *weight.shape().last().unwrap_or(&0);
    let groups = *scales.shape().last().unwrap_or(&0);
    if packed * 32 / bits != groups * group_size {
        return Err(EngineError::model_load(format!(
            "quantized tensor '{prefix}' does not match quantization group_size={group_size} bits={bits}"
        )));
    }
    Ok(Some(Quantized { weight, scales, biases, group_size, bits }))
}

pub(crate) fn module_params(cfg: &QuantizationConfig, prefix: &str) -> (i32, i32) {
    match cfg.overrides.get(prefix).and_then(|v| v.as_object()) {
        Some(o) => (
            o.get("group_size").and_then(|v| v.as_i64()).map(|v| v as i32).unwrap_or(cfg.group_size),
            o.get("bits").and_then(|v| v.as_i64()).map(|v| v as i32).unwrap_or(cfg.bits),
        ),
        None => (cfg.group_size, cfg.bits),
    }
}
