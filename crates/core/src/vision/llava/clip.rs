//! The CLIP (or SigLIP) vision tower as LLaVA uses it: a patch embedding (a stride = kernel
//! Conv2d; SigLIP's has a bias), CLIP's learned class token in front, learned position
//! embeddings, CLIP's LayerNorm before the encoder, pre-norm encoder layers (full attention with
//! biased projections, quick-GELU MLP — mlx-vlm's LLaVA uses it for SigLIP towers too), and the
//! hidden state after the configured number of layers (LLaVA reads an inner layer, so later
//! layers never run).

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array};

use super::config::ClipConfig;
use crate::error::{EngineError, EngineResult};
use crate::models::config::QuantizationConfig;
use crate::models::linear::Linear;
use crate::models::weights::WeightMap;
use crate::vision::activation::quick_gelu;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

struct Norm {
    weight: Array,
    bias: Array,
}

impl Norm {
    fn load(w: &WeightMap, p: &str) -> EngineResult<Self> {
        Ok(Norm { weight: w.require(&format!("{p}.weight"))?, bias: w.require(&format!("{p}.bias"))? })
    }
}

struct Layer {
    norm1: Norm,
    norm2: Norm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    fc1: Linear,
    fc2: Linear,
}

pub struct ClipTower {
    cfg: ClipConfig,
    /// MLX's conv2d weight [hidden, P, P, C].
    patch_weight: Array,
    /// SigLIP only.
    patch_bias: Option<Array>,
    /// CLIP only.
    class_embedding: Option<Array>,
    position_embedding: Array,
    /// CLIP only.
    pre_norm: Option<Norm>,
    layers: Vec<Layer>,
}

impl ClipTower {
    /// `w` holds `vision_model.*` without the tower prefix; only the first `run_layers` encoder
    /// layers are loaded. `quant`: the checkpoint's settings, for layers stored quantized.
    pub fn load(cfg: ClipConfig, w: &WeightMap, run_layers: usize, quant: Option<&QuantizationConfig>) -> EngineResult<Self> {
        let p = "vision_model";
        let lin = |name: String| Linear::load(w, &name, quant, true);
        let (e, c, k) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let pw = w.require(&format!("{p}.embeddings.patch_embedding.weight"))?;
        let conv = |x: mlx_rs::error::Exception| EngineError::model_load(format!("patch_embedding: {}", x.what()));
        let shape = pw.shape().to_vec();
        // MLX layout [E, P, P, C] (mlx-community) or PyTorch layout [E, C, P, P] (HF), kept as
        // MLX's conv2d weight [E, P, P, C]
        let patch_weight = if shape == [e, k, k, c] {
            pw
        } else if shape == [e, c, k, k] {
            pw.transpose_axes(&[0, 2, 3, 1]).and_then(|w| w.contiguous()).map_err(conv)?
        } else {
            return Err(EngineError::model_load(format!("patch_embedding.weight has shape {shape:?}, expected [{e}, {k}, {k}, {c}]")));
        };
        let side = cfg.image_size / cfg.patch_size;
        let position_embedding = w.require(&format!("{p}.embeddings.position_embedding.weight"))?;
        let positions = side * side + i32::from(!cfg.siglip);
        if position_embedding.shape() != [positions, e] {
            return Err(EngineError::model_load(format!(
                "position_embedding has shape {:?}, expected [{positions}, {e}]",
                position_embedding.shape()
            )));
        }
        let mut layers = Vec::with_capacity(run_layers);
        for i in 0..run_layers {
            let b = format!("{p}.encoder.layers.{i}");
            layers.push(Layer {
                norm1: Norm::load(w, &format!("{b}.layer_norm1"))?,
                norm2: Norm::load(w, &format!("{b}.layer_norm2"))?,
                q: lin(format!("{b}.self_attn.q_proj"))?,
                k: lin(format!("{b}.self_attn.k_proj"))?,
                v: lin(format!("{b}.self_attn.v_proj"))?,
                out: lin(format!("{b}.self_attn.out_proj"))?,
                fc1: lin(format!("{b}.mlp.fc1"))?,
                fc2: lin(format!("{b}.mlp.fc2"))?,
            });
        }
        let (siglip, clip) = (cfg.siglip, !cfg.siglip);
        Ok(ClipTower {
            patch_weight,
            patch_bias: siglip.then(|| w.require(&format!("{p}.embeddings.patch_embedding.bias"))).transpose()?,
            class_embedding: clip.then(|| w.require(&format!("{p}.embeddings.class_embedding"))).transpose()?,
            position_embedding,
            pre_norm: clip.then(|| Norm::load(w, &format!("{p}.pre_layrnorm"))).transpose()?,
            layers,
            cfg,
        })
    }

    pub fn arrays(&self) -> Vec<Array> {
        let mut out = vec![self.patch_weight.clone(), self.position_embedding.clone()];
        out.extend(self.patch_bias.iter().chain(&self.class_embedding).cloned());
        if let Some(n) = &self.pre_norm {
            out.extend([n.weight.clone(), n.bias.clone()]);
        }
        for l in &self.layers {
            out.extend([l.norm1.weight.clone(), l.norm1.bias.clone(), l.norm2.weight.clone(), l.norm2.bias.clone()]);
            for lin in [&l.q, &l.k, &l.v, &l.out, &l.fc1, &l.fc2] {
                crate::models::causal::linear_arrays(lin, &mut out);
            }
        }
        out
    }

    fn layer_norm(&self, n: &Norm, x: &Array, eps: f32) -> MlxResult<Array> {
        fast::layer_norm(x, &n.weight, &n.bias, eps)
    }

    /// Pixels [3, S, S] (S = image_size) → hidden states [tokens, hidden] (CLIP: the class token,
    /// then the patches; SigLIP: the patches).
    pub fn forward(&self, pixels: &Array) -> MlxResult<Array> {
        let (c, p, s) = (self.cfg.num_channels, self.cfg.patch_size, self.cfg.image_size);
        // A stride-P convolution over the channels-last image, as mlx-vlm computes it (a matmul
        // sums in another order: an ulp apart in bf16) → one row per patch, row-major over the
        // grid. The pixels stay f32 as in mlx-vlm's LLaVA, so the tower runs in f32 whatever the
        // weights' dtype; the projected features take the text embeddings' dtype (llava/mod.rs).
        let image = pixels.reshape(&[1, c, s, s])?.transpose_axes(&[0, 2, 3, 1])?;
        let mut x = ops::conv2d(&image, &self.patch_weight, (p, p), None, None, None)?;
        if let Some(b) = &self.patch_bias {
            x = ops::add(&x, b)?;
        }
        let mut x = x.reshape(&[(s / p) * (s / p), -1])?;
        if let Some(cls) = &self.class_embedding {
            x = ops::concatenate(&[cls.reshape(&[1, -1])?, x], 0)?;
        }
        x = ops::add(&x, &self.position_embedding)?;
        if let Some(n) = &self.pre_norm {
            // nn.LayerNorm's default eps before the encoder; the configured one inside it
            x = self.layer_norm(n, &x, 1e-5)?;
        }
        let eps = self.cfg.layer_norm_eps;
        for l in &self.layers {
            let h = self.layer_norm(&l.norm1, &x, eps)?;
            x = ops::add(&x, &self.attention(l, &h)?)?;
            let h = self.layer_norm(&l.norm2, &x, eps)?;
            x = ops::add(&x, &l.fc2.forward(&quick_gelu(&l.fc1.forward(&h)?)?)?)?;
        }
        Ok(x)
    }

    fn attention(&self, l: &Layer, x: &Array) -> MlxResult<Array> {
        let n = x.shape()[0];
        let heads = self.cfg.num_attention_heads;
        let hd = self.cfg.hidden_size / heads;
        let split = |a: Array| a.reshape(&[1, n, heads, hd])?.transpose_axes(&[0, 2, 1, 3]);
        let (q, k, v) = (split(l.q.forward(x)?)?, split(l.k.forward(x)?)?, split(l.v.forward(x)?)?);
        let out = crate::models::sdpa::full(&q, &k, &v, (hd as f32).powf(-0.5))?;
        l.out.forward(&out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, heads * hd])?)
    }

    /// Drops the first row (CLIP's class token; the `default` strategy).
    pub fn patch_rows(x: &Array) -> MlxResult<Array> {
        x.try_index(1..)
    }
}
