//! The sparse mixture-of-experts MLP shared by the MoE families (qwen3_moe, mixtral): a router
//! (`gate`, a linear layer to one logit per expert) picks `top_k` experts per token, each a SwiGLU
//! MLP whose weights are STACKED over experts ([E, out, in], dense or MLX affine-quantized: the
//! `switch_mlp` layout mlx-community checkpoints hold, and what `stack_experts` makes of Hugging
//! Face's one-tensor-per-expert layout), and the expert outputs are summed with the routing
//! weights. Two ways to run the experts (`MoeKernel`):
//! - `Gather`: MLX's gather_mm / gather_qmm over token–expert pairs, sorted by expert for big
//!   batches (no host round trip; what the GPU backends use).
//! - `Sorted`: the routing is read on the host, the token rows are grouped per expert and each
//!   used expert runs ONE dense (or quantized) matmul over all its rows — on the CPU backend that
//!   is an sgemm through the optimized BLAS instead of one matrix-vector product per pair.
//! On the CPU backend `Auto` takes `Gather` while experts get few rows (decode) and `Sorted` for
//! many (prefill, big batches): measured with examples/moe_kernels.rs, see docs/ARCHITECTURE.md.

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::ops::argpartition_axis;
use mlx_rs::{ops, Array, Dtype};

use super::causal::linear_arrays;
use super::config::QuantizationConfig;
use super::linear::Linear;
use super::weights::WeightMap;
use super::activation::swiglu;
use crate::error::{EngineError, EngineResult};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// How router logits become (expert ids, weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// qwen3_moe: softmax over all experts, top-k of the probabilities, optionally renormalized
    /// to sum to 1 (`norm_topk_prob`).
    SoftmaxTopK { norm_topk_prob: bool },
    /// mixtral: top-k of the logits, softmax over the selected ones.
    TopKSoftmax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeKernel {
    Gather,
    Sorted,
    /// `Sorted` once a forward pass has `AUTO_SORTED_PAIRS_PER_EXPERT` token–expert pairs per
    /// expert on average, else `Gather`.
    Auto,
}

/// Where `Auto` switches to host-sorted experts. On the CPU backend gather_mm wins while the
/// experts get few rows each (decode: no host round trip, no per-expert op overhead) and loses
/// by 2-10x on prefill (one matrix-vector product per pair re-reads the expert's weights); the
/// measured crossover lies between 2 and 4 pairs per expert for 8 and for 128 experts.
pub const AUTO_SORTED_PAIRS_PER_EXPERT: i32 = 3;

impl MoeKernel {
    /// `MLX_SERVING_MOE_KERNEL=gather|sorted|auto` when set, else `Auto` on the CPU backend and
    /// `Gather` on GPUs.
    pub fn resolve(device: &str) -> EngineResult<Self> {
        match std::env::var("MLX_SERVING_MOE_KERNEL").ok().as_deref() {
            Some("gather") => Ok(MoeKernel::Gather),
            Some("sorted") => Ok(MoeKernel::Sorted),
            Some("auto") => Ok(MoeKernel::Auto),
            None | Some("") => Ok(if device == "cpu" { MoeKernel::Auto } else { MoeKernel::Gather }),
            Some(other) => Err(EngineError::model_load(format!("MLX_SERVING_MOE_KERNEL must be 'gather', 'sorted' or 'auto', not '{other}'"))),
        }
    }
}

/// The experts' SwiGLU MLP, weights stacked over experts.
struct SwitchGlu {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

pub struct MoeBlock {
    router: Linear,
    experts: SwitchGlu,
    num_experts: i32,
    top_k: i32,
    routing: Routing,
    kernel: MoeKernel,
}

impl MoeBlock {
    /// `router` and `experts` are module paths (`model.layers.0.mlp.gate`,
    /// `model.layers.0.mlp.switch_mlp`).
    pub fn load(w: &WeightMap, router: &str, experts: &str, quant: Option<&QuantizationConfig>, num_experts: i32, top_k: i32, routing: Routing, kernel: MoeKernel) -> EngineResult<Self> {
        if top_k < 1 || top_k > num_experts {
            return Err(EngineError::model_load(format!("config.json: num_experts_per_tok {top_k} must be in 1..={num_experts}")));
        }
        let router = Linear::load(w, router, quant, false)?;
        let lin = |n: &str| -> EngineResult<Linear> {
            let name = format!("{experts}.{n}");
            let l = Linear::load(w, &name, quant, false)?;
            let (shape, bias) = match &l {
                Linear::Dense { weight, bias, .. } => (weight.shape().to_vec(), bias.is_some()),
                Linear::Quantized { q, bias } => (q.weight.shape().to_vec(), bias.is_some()),
            };
            if shape.len() != 3 || shape[0] != num_experts {
                return Err(EngineError::model_load(format!("{name}.weight has shape {shape:?}, expected [{num_experts}, out, in] (experts stacked)"))
                    .with_detail("tensor", format!("{name}.weight")));
            }
            if bias {
                return Err(EngineError::model_load(format!("{name}: expert biases are not supported")).with_detail("tensor", format!("{name}.bias")));
            }
            Ok(l)
        };
        let experts = SwitchGlu { gate_proj: lin("gate_proj")?, up_proj: lin("up_proj")?, down_proj: lin("down_proj")? };
        Ok(MoeBlock { router, experts, num_experts, top_k, routing, kernel })
    }

    /// x: [1, T, hidden] → [1, T, hidden].
    pub fn forward(&self, x: &Array) -> MlxResult<Array> {
        let (t, h) = (x.shape()[1], x.shape()[2]);
        let x = x.reshape(&[t, h])?;
        let (inds, scores) = self.route(&self.router.forward(&x)?)?;
        let sorted = match self.kernel {
            MoeKernel::Gather => false,
            MoeKernel::Sorted => true,
            MoeKernel::Auto => t * self.top_k >= AUTO_SORTED_PAIRS_PER_EXPERT * self.num_experts,
        };
        let y = if sorted { self.experts.sorted(&x, &inds, self.num_experts)? } else { self.experts.gather(&x, &inds)? };
        let weighted = ops::multiply(&y, &scores.expand_dims(-1)?)?;
        weighted.sum_axis(-2, false)?.as_dtype(y.dtype())?.reshape(&[1, t, h])
    }

    /// Router logits [T, E] → (expert ids [T, k], routing weights [T, k]), with the same MLX
    /// ops as mlx-lm so ties and the order of the k experts come out the same.
    fn route(&self, gates: &Array) -> MlxResult<(Array, Array)> {
        let (e, k) = (self.num_experts, self.top_k);
        match self.routing {
            Routing::SoftmaxTopK { norm_topk_prob } => {
                let probs = ops::softmax_axis(gates, -1, true)?;
                let inds = argpartition_axis(&probs, e - k, -1)?.try_index((.., e - k..))?;
                let scores = probs.take_along_axis(&inds, -1)?;
                let scores = if norm_topk_prob { ops::divide(&scores, &scores.sum_axis(-1, true)?)? } else { scores };
                Ok((inds, scores))
            }
            Routing::TopKSoftmax => {
                let inds = argpartition_axis(&ops::negative(gates)?, k - 1, -1)?.try_index((.., ..k))?;
                let scores = ops::softmax_axis(gates.take_along_axis(&inds, -1)?, -1, true)?;
                Ok((inds, scores))
            }
        }
    }

    /// Overrides the kernel chosen at load (tests and benchmarks compare them).
    pub fn set_kernel(&mut self, kernel: MoeKernel) {
        self.kernel = kernel;
    }

    pub fn arrays(&self, out: &mut Vec<Array>) {
        for l in [&self.router, &self.experts.gate_proj, &self.experts.up_proj, &self.experts.down_proj] {
            linear_arrays(l, out);
        }
    }
}

impl SwitchGlu {
    /// MLX's gather kernels over token–expert pairs: x [T, H], inds [T, k] → [T, k, H]. Pairs
    /// are sorted by expert when there are at least 64 (as mlx-lm does).
    fn gather(&self, x: &Array, inds: &Array) -> MlxResult<Array> {
        let (t, h, k) = (x.shape()[0], x.shape()[1], inds.shape()[1]);
        if t * k < 64 {
            let y = self.glu(&x.reshape(&[t, 1, 1, h])?, inds, false)?;
            return y.reshape(&[t, k, h]);
        }
        let flat = inds.flatten(None, None)?;
        let order = ops::argsort_axis(&flat, 0)?;
        let inv = ops::argsort_axis(&order, 0)?;
        let rows = ops::floor_divide(&order, &Array::from_int(k).as_dtype(order.dtype())?)?;
        let xs = x.reshape(&[t, 1, h])?.take_axis(&rows, 0)?;
        let y = self.glu(&xs, &flat.take_axis(&order, 0)?, true)?;
        y.take_axis(&inv, 0)?.reshape(&[t, k, h])
    }

    fn glu(&self, x: &Array, idx: &Array, sorted: bool) -> MlxResult<Array> {
        let up = gather_linear(&self.up_proj, x, idx, sorted)?;
        let gate = gather_linear(&self.gate_proj, x, idx, sorted)?;
        gather_linear(&self.down_proj, &swiglu(&gate, &up)?, idx, sorted)
    }

    /// Host-grouped experts: x [T, H], inds [T, k] → [T, k, H]; one matmul per used expert.
    fn sorted(&self, x: &Array, inds: &Array, num_experts: i32) -> MlxResult<Array> {
        let (t, h, k) = (x.shape()[0], x.shape()[1], inds.shape()[1]);
        let flat = inds.as_dtype(Dtype::Uint32)?.contiguous()?;
        let flat = flat.try_as_slice::<u32>().map_err(|e| mlx_rs::error::Exception::custom(format!("reading the routing: {e:?}")))?;
        let mut counts = vec![0i32; num_experts as usize];
        for &e in flat {
            let slot = counts.get_mut(e as usize).ok_or_else(|| mlx_rs::error::Exception::custom(format!("router chose expert {e} of {num_experts}")))?;
            *slot += 1;
        }
        // Stable counting sort of the token–expert pairs by expert.
        let mut next: Vec<i32> = counts.iter().scan(0, |acc, &c| { let s = *acc; *acc += c; Some(s) }).collect();
        let mut order = vec![0i32; flat.len()];
        let mut inv = vec![0i32; flat.len()];
        for (pair, &e) in flat.iter().enumerate() {
            let dst = next[e as usize];
            next[e as usize] += 1;
            order[dst as usize] = pair as i32 / k;
            inv[pair] = dst;
        }
        let xs = x.take_axis(&Array::from_slice(&order, &[order.len() as i32]), 0)?;
        let mut outs = Vec::new();
        let mut start = 0i32;
        for (e, &n) in counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let xe = if n == t * k { xs.clone() } else { xs.try_index(start..start + n)? };
            let up = expert_linear(&self.up_proj, &xe, e as i32)?;
            let gate = expert_linear(&self.gate_proj, &xe, e as i32)?;
            outs.push(expert_linear(&self.down_proj, &swiglu(&gate, &up)?, e as i32)?);
            start += n;
        }
        let ys = if outs.len() == 1 { outs.pop().unwrap() } else { ops::concatenate(&outs, 0)? };
        ys.take_axis(&Array::from_slice(&inv, &[inv.len() as i32]), 0)?.reshape(&[t, k, h])
    }
}

fn gather_linear(l: &Linear, x: &Array, idx: &Array, sorted: bool) -> MlxResult<Array> {
    match l {
        Linear::Dense { weight_t, .. } => ops::gather_mm(x, weight_t, None, idx, sorted),
        Linear::Quantized { q, .. } => ops::gather_qmm(x, &q.weight, &q.scales, &q.biases, None, idx, true, q.group_size, q.bits, sorted),
    }
}

/// x [n, in] through expert `e` of a stacked layer → [n, out].
fn expert_linear(l: &Linear, x: &Array, e: i32) -> MlxResult<Array> {
    match l {
        Linear::Dense { weight_t, .. } => ops::matmul(x, &weight_t.try_index(e)?),
        Linear::Quantized { q, .. } => {
            let (w, s, b) = (q.weight.try_index(e)?, q.scales.try_index(e)?, q.biases.try_index(e)?);
            ops::quantized_matmul(x, &w, &s, &b, true, q.group_size, q.bits)
        }
    }
}

/// Hugging Face's per-expert tensors `{layer}.{from}.{e}.{src}.{weight,scales,biases}` become one
/// stacked `{layer}.{to}.{dst}.*` tensor [E, ...] per projection (mlx-lm's sanitize does the
/// same). Folders already in the stacked layout pass through unchanged.
pub fn stack_experts(w: &mut WeightMap, layers: i32, experts: i32, from: &str, to: &str, names: &[(&str, &str)]) -> EngineResult<()> {
    let err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("cannot stack expert weights: {}", e.what()));
    for l in 0..layers {
        for (src, dst) in names {
            for suffix in ["weight", "scales", "biases"] {
                let name = |e: i32| format!("model.layers.{l}.{from}.{e}.{src}.{suffix}");
                if !w.contains(&name(0)) {
                    continue;
                }
                let parts = (0..experts)
                    .map(|e| w.remove(&name(e)).ok_or_else(|| EngineError::model_load(format!("weights are missing tensor '{}'", name(e))).with_detail("tensor", name(e))))
                    .collect::<EngineResult<Vec<_>>>()?;
                if w.contains(&name(experts)) {
                    return Err(EngineError::model_load(format!("weights have tensor '{}' but config.json says {experts} experts", name(experts))));
                }
                w.insert(format!("model.layers.{l}.{to}.{dst}.{suffix}"), ops::stack(&parts, 0).map_err(err)?);
            }
        }
    }
    Ok(())
}
