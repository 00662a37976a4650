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
    /// `weight_t` is `weight`'s last two axes swapped: a view made once, so a product does not
    /// add a transpose to every step's graph (one node fewer per projection for MLX to build
    /// and evaluate; on a GPU the step is bound by that host work).
    Dense { weight: Array, weight_t: Array, bias: Option<Array> },
    Quantized { q: Quantized, bias: Option<Array> },
}

impl Linear {
    /// `prefix` is the module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub fn load(w: &WeightMap, prefix: &str, quant: Option<&QuantizationConfig>, with_bias: bool) -> EngineResult<Self> {
        let bias = if with_bias { Some(w.require(&format!("{prefix}.bias"))?) } else { w.get(&format!("{prefix}.bias")).cloned() };
        match load_quantized(w, prefix, quant)? {
            Some(q) => Ok(Linear::Quantized { q, bias }),
            None => Linear::dense(w.require(&format!("{prefix}.weight"))?, bias).map_err(|e| EngineError::model_load(format!("{prefix}: {}", e.what()))),
        }
    }

    /// A dense layer over `weight` [.., out, in].
    pub fn dense(weight: Array, bias: Option<Array>) -> Result<Self, mlx_rs::error::Exception> {
        let weight_t = weight.swap_axes(-1, -2)?;
        Ok(Linear::Dense { weight, weight_t, bias })
    }

    /// Output features (rows of the weight; of the packed weight when quantized).
    pub fn out_features(&self) -> i32 {
        match self {
            Linear::Dense { weight, .. } => weight.shape()[0],
            Linear::Quantized { q, .. } => q.weight.shape()[0],
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array, mlx_rs::error::Exception> {
        let (y, bias) = match self {
            // bias folded into the product, as MLX's nn.Linear (mlx-lm, mlx-vlm) does: one
            // rounding instead of two, which in bf16 changes most outputs by an ulp
            Linear::Dense { weight_t, bias: Some(b), .. } => return ops::addmm(b, x, weight_t, None, None),
            Linear::Dense { weight, weight_t, bias } => (dense_product(x, weight, weight_t)?, bias),
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
    /// `table_t`: the table's transposed view, made once (see `Linear::Dense`).
    Dense { table: Array, table_t: Array },
    Quantized(Quantized),
}

impl Embedding {
    pub fn load(w: &WeightMap, prefix: &str, quant: Option<&QuantizationConfig>) -> EngineResult<Self> {
        match load_quantized(w, prefix, quant)? {
            Some(q) => Ok(Embedding::Quantized(q)),
            None => {
                let table = w.require(&format!("{prefix}.weight"))?;
                let table_t = table.swap_axes(-1, -2).map_err(|e| EngineError::model_load(format!("{prefix}: {}", e.what())))?;
                Ok(Embedding::Dense { table, table_t })
            }
        }
    }

    pub fn rows(&self) -> i32 {
        match self {
            Embedding::Dense { table, .. } => table.shape()[0],
            Embedding::Quantized(q) => q.weight.shape()[0],
        }
    }

    /// The dtype `lookup` returns (a quantized table dequantizes to its scales' dtype).
    pub fn dtype(&self) -> mlx_rs::Dtype {
        match self {
            Embedding::Dense { table, .. } => table.dtype(),
            Embedding::Quantized(q) => q.scales.dtype(),
        }
    }

    /// ids: int32 [B, L] → [B, L, hidden]
    pub fn lookup(&self, ids: &Array) -> Result<Array, mlx_rs::error::Exception> {
        match self {
            Embedding::Dense { table, .. } => table.take_axis(ids, 0),
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
            Embedding::Dense { table, table_t } => dense_product(x, table, table_t),
            Embedding::Quantized(q) => ops::quantized_matmul(x, &q.weight, &q.scales, &q.biases, true, q.group_size, q.bits),
        }
    }
}

/// x · wᵀ for a dense weight w [out, in]: 2–16 rows on CUDA go through `rows_matmul` (one
/// bandwidth-bound read of the weights for all rows, where cuBLAS's small tiles are slower).
fn dense_product(x: &Array, w: &Array, w_t: &Array) -> Result<Array, mlx_rs::error::Exception> {
    match super::rows_matmul::matmul(x, w)? {
        Some(y) => Ok(y),
        None => ops::matmul(x, w_t),
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

/// Several projections of the same input (q/k/v, gate/up): one layer per projection, or — the
/// default — their weights stacked along the output axis into ONE layer whose output is split
/// again, so a step runs one matmul instead of several (fewer kernels on a GPU, fewer and larger
/// BLAS calls on a CPU). Each output element is the same dot product either way.
/// `MLX_SERVING_FUSE_PROJECTIONS=0` keeps them separate (for A/B measurements).
pub enum Projections {
    Separate(Vec<Linear>),
    Fused { layer: Linear, bounds: Vec<i32> },
}

impl Projections {
    pub fn new(parts: Vec<Linear>) -> Result<Self, mlx_rs::error::Exception> {
        if std::env::var("MLX_SERVING_FUSE_PROJECTIONS").is_ok_and(|v| v == "0") || parts.len() < 2 {
            return Ok(Projections::Separate(parts));
        }
        Ok(match fuse(&parts)? {
            Some((layer, bounds)) => Projections::Fused { layer, bounds },
            None => Projections::Separate(parts),
        })
    }

    /// The fused product itself (the parts side by side), `None` when the projections are
    /// separate: for kernels that read the parts straight out of it.
    pub fn product(&self, x: &Array) -> Option<Result<Array, mlx_rs::error::Exception>> {
        match self {
            Projections::Fused { layer, .. } => Some(layer.forward(x)),
            Projections::Separate(_) => None,
        }
    }

    /// x: [.., in] → one output per projection.
    pub fn forward(&self, x: &Array) -> Result<Vec<Array>, mlx_rs::error::Exception> {
        match self {
            Projections::Separate(parts) => parts.iter().map(|l| l.forward(x)).collect(),
            Projections::Fused { layer, bounds } => {
                split_last(&layer.forward(x)?, bounds)
            }
        }
    }

    pub fn layers(&self) -> Vec<&Linear> {
        match self {
            Projections::Separate(parts) => parts.iter().collect(),
            Projections::Fused { layer, .. } => vec![layer],
        }
    }
}

/// Stacks layers along the output axis: `None` when they differ in kind, dtype, quantization
/// parameters or bias presence. Returns the layer and the split points of its output.
fn fuse(parts: &[Linear]) -> Result<Option<(Linear, Vec<i32>)>, mlx_rs::error::Exception> {
    let mut bounds = Vec::new();
    let mut acc = 0;
    for l in &parts[..parts.len() - 1] {
        acc += l.out_features();
        bounds.push(acc);
    }
    let biases: Vec<&Array> = parts.iter().filter_map(|l| match l {
        Linear::Dense { bias, .. } | Linear::Quantized { bias, .. } => bias.as_ref(),
    }).collect();
    let bias = match biases.len() {
        0 => None,
        n if n == parts.len() && biases.iter().all(|b| b.dtype() == biases[0].dtype()) => Some(ops::concatenate(&biases, 0)?),
        _ => return Ok(None),
    };
    let layer = match &parts[0] {
        Linear::Dense { weight: w0, .. } => {
            let mut ws = Vec::new();
            for l in parts {
                match l {
                    Linear::Dense { weight, .. } if weight.dtype() == w0.dtype() && weight.shape()[1] == w0.shape()[1] => ws.push(weight),
                    _ => return Ok(None),
                }
            }
            Linear::dense(ops::concatenate(&ws, 0)?, bias)?
        }
        Linear::Quantized { q: q0, .. } => {
            let (mut w, mut s, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for l in parts {
                match l {
                    Linear::Quantized { q, .. }
                        if q.group_size == q0.group_size && q.bits == q0.bits && q.weight.shape()[1] == q0.weight.shape()[1] && q.scales.dtype() == q0.scales.dtype() =>
                    {
                        w.push(&q.weight);
                        s.push(&q.scales);
                        b.push(&q.biases);
                    }
                    _ => return Ok(None),
                }
            }
            let q = Quantized { weight: ops::concatenate(&w, 0)?, scales: ops::concatenate(&s, 0)?, biases: ops::concatenate(&b, 0)?, group_size: q0.group_size, bits: q0.bits };
            Linear::Quantized { q, bias }
        }
    };
    Ok(Some((layer, bounds)))
}

/// Splits the last axis of `x` at the given boundaries (fused projections: qkv, gate_up) into
/// contiguous arrays. Left as strided views into a product of several rows (an offset and the
/// whole width as row stride), they made MLX 0.32's CUDA backend write out of bounds
/// (compute-sanitizer: invalid 2-byte global writes, bf16) and batched greedy ids go wrong from
/// the first token (H200), so those are copied. A one-row product's parts are contiguous
/// already, and a 1-row GPU decode step is bound by its kernel count, so those stay views
/// (`MLX_SERVING_SPLIT_COPY=1` copies them too, for A/B runs).
pub(crate) fn split_last(x: &Array, bounds: &[i32]) -> Result<Vec<Array>, mlx_rs::error::Exception> {
    let axis = x.ndim() as i32 - 1;
    let parts = x.split_at_indices(bounds, axis)?;
    let one_row = x.shape().iter().rev().skip(1).all(|&d| d == 1);
    if one_row && !copy_single_rows() {
        return Ok(parts);
    }
    parts.iter().map(Array::contiguous).collect()
}

fn copy_single_rows() -> bool {
    static COPY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COPY.get_or_init(|| std::env::var("MLX_SERVING_SPLIT_COPY").is_ok_and(|v| v == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_arrays::{max_rel_diff, normal};

    /// The parts of a several-row fused product come out contiguous (not views into it): MLX's
    /// CUDA kernels wrote out of bounds on such views. A one-row product (a 1-row decode step)
    /// splits into its parts as they are. The values are the product's either way.
    #[test]
    fn split_parts_are_contiguous_or_one_rows_slices() {
        for (shape, seed) in [([2, 3, 10], 1), ([1, 1, 10], 2)] {
            let x = normal(&shape, seed);
            let parts = split_last(&x, &[4, 7]).unwrap();
            let widths: Vec<i32> = parts.iter().map(|p| p.shape()[2]).collect();
            assert_eq!(widths, vec![4, 3, 3]);
            if shape[1] > 1 {
                for (p, w) in parts.iter().zip(&widths) {
                    p.eval().unwrap();
                    assert_eq!(p.strides(), &[3 * *w as usize, *w as usize, 1], "a split part is a strided view");
                }
            }
            let back = ops::concatenate(&parts, 2).unwrap();
            assert_eq!(max_rel_diff(&back, &x), 0.0);
        }
    }

    /// The stacked layer computes what the separate layers do (dense with biases, and MLX 4-bit),
    /// split back at the right places; a layer of another kind is not stacked.
    #[test]
    fn fused_projections_match_separate_layers() {
        let x = normal(&[1, 5, 64], 1);
        let dense = |out: i32, seed: u64| Linear::dense(normal(&[out, 64], seed), Some(normal(&[out], seed + 100))).unwrap();
        let parts = vec![dense(64, 2), dense(16, 3), dense(16, 4)];
        let want: Vec<Array> = parts.iter().map(|l| l.forward(&x).unwrap()).collect();
        let fused = Projections::new(parts).unwrap();
        assert!(matches!(fused, Projections::Fused { .. }));
        let got = fused.forward(&x).unwrap();
        assert_eq!(got.len(), 3);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.shape(), w.shape());
            assert!(max_rel_diff(g, w) < 1e-5, "{}", max_rel_diff(g, w));
        }
        let quant = |out: i32, seed: u64| {
            let (weight, scales, biases) = ops::quantize(&normal(&[out, 64], seed), 32, 4).unwrap();
            Linear::Quantized { q: Quantized { weight, scales, biases, group_size: 32, bits: 4 }, bias: None }
        };
        let parts = vec![quant(48, 5), quant(96, 6)];
        let want: Vec<Array> = parts.iter().map(|l| l.forward(&x).unwrap()).collect();
        let fused = Projections::new(parts).unwrap();
        assert!(matches!(fused, Projections::Fused { .. }));
        for (g, w) in fused.forward(&x).unwrap().iter().zip(&want) {
            assert!(max_rel_diff(g, w) < 1e-5, "{}", max_rel_diff(g, w));
        }
        // dense + quantized: left separate
        let mixed = Projections::new(vec![dense(16, 7), quant(32, 8)]).unwrap();
        assert!(matches!(mixed, Projections::Separate(_)));
        // bias on one layer only: left separate
        let no_bias = Linear::dense(normal(&[16, 64], 9), None).unwrap();
        assert!(matches!(Projections::new(vec![dense(16, 10), no_bias]).unwrap(), Projections::Separate(_)));
    }
}
