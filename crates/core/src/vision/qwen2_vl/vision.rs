//! The Qwen2-VL vision tower: a patch embedding (a Conv3d whose stride equals its kernel, so a
//! matrix product over each flattened C×T×P×P patch), pre-norm ViT blocks with full attention
//! within each image and 2-D rotary embeddings (half the rotary frequencies follow the patch
//! row, half the column), then the patch merger: LayerNorm, concatenation of each 2×2 block
//! of neighbouring patches (consecutive rows, by the preprocessor's ordering) and a GELU MLP
//! into the language model's width.

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array};

use super::config::VisionConfig;
use crate::error::{EngineError, EngineResult};
use crate::models::linear::Linear;
use crate::models::weights::WeightMap;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

const LN_EPS: f32 = 1e-6;

struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    fn load(w: &WeightMap, p: &str) -> EngineResult<Self> {
        Ok(LayerNorm { weight: w.require(&format!("{p}.weight"))?, bias: w.require(&format!("{p}.bias"))? })
    }
    fn forward(&self, x: &Array) -> MlxResult<Array> {
        fast::layer_norm(x, &self.weight, &self.bias, LN_EPS)
    }
}

struct Block {
    norm1: LayerNorm,
    norm2: LayerNorm,
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
}

pub struct VisionTower {
    cfg: VisionConfig,
    /// [embed_dim, C·T·P·P] in the pixel rows' (channel, frame, y, x) order.
    patch_weight: Array,
    blocks: Vec<Block>,
    ln_q: LayerNorm,
    merge_fc1: Linear,
    merge_fc2: Linear,
    /// 1 / 10000^(2i / (head_dim/2)) for i < head_dim/4, twice (row frequencies, then column).
    inv_freq: Array,
}

fn quick_gelu(x: &Array) -> MlxResult<Array> {
    ops::multiply(x, &ops::sigmoid(&ops::multiply(x, &Array::from_f32(1.702))?)?)
}

fn gelu(x: &Array) -> MlxResult<Array> {
    let e = ops::erf(&ops::divide(x, &Array::from_f32(std::f32::consts::SQRT_2))?)?;
    ops::divide(&ops::multiply(x, &ops::add(&e, &Array::from_f32(1.0))?)?, &Array::from_f32(2.0))
}

impl VisionTower {
    /// `w` holds the tower's tensors without the `vision_tower.` prefix.
    pub fn load(cfg: VisionConfig, w: &WeightMap) -> EngineResult<Self> {
        let lin = |name: &str| Linear::load(w, name, None, false);
        let pw = w.require("patch_embed.proj.weight")?;
        let (e, c, t, p) = (cfg.embed_dim, cfg.in_chans, cfg.temporal_patch_size, cfg.patch_size);
        let shape = pw.shape().to_vec();
        let conv = |e: mlx_rs::error::Exception| EngineError::model_load(format!("patch_embed: {}", e.what()));
        // MLX layout [E, T, P, P, C] (mlx-community) or PyTorch layout [E, C, T, P, P] (HF).
        let patch_weight = if shape == [e, t, p, p, c] {
            pw.transpose_axes(&[0, 4, 1, 2, 3]).map_err(conv)?
        } else if shape == [e, c, t, p, p] {
            pw
        } else {
            return Err(EngineError::model_load(format!("patch_embed.proj.weight has shape {shape:?}, expected [{e}, {t}, {p}, {p}, {c}]")));
        };
        let patch_weight = patch_weight.reshape(&[e, c * t * p * p]).map_err(conv)?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = format!("blocks.{i}");
            blocks.push(Block {
                norm1: LayerNorm::load(w, &format!("{b}.norm1"))?,
                norm2: LayerNorm::load(w, &format!("{b}.norm2"))?,
                qkv: lin(&format!("{b}.attn.qkv"))?,
                proj: lin(&format!("{b}.attn.proj"))?,
                fc1: lin(&format!("{b}.mlp.fc1"))?,
                fc2: lin(&format!("{b}.mlp.fc2"))?,
            });
        }
        let quarter = (cfg.embed_dim / cfg.num_heads) / 4;
        let dim = (2 * quarter) as f32;
        let inv = (|| -> MlxResult<Array> {
            let exps = ops::divide(&ops::arange::<_, f32>(0, 2 * quarter, 2)?, &Array::from_f32(dim))?;
            let f = ops::divide(&Array::from_f32(1.0), &ops::power(&Array::from_f32(10000.0), &exps)?)?;
            ops::concatenate(&[f.clone(), f], 0)
        })()
        .map_err(conv)?;
        Ok(VisionTower {
            patch_weight,
            blocks,
            ln_q: LayerNorm::load(w, "merger.ln_q")?,
            merge_fc1: lin("merger.mlp.0")?,
            merge_fc2: lin("merger.mlp.2")?,
            inv_freq: inv,
            cfg,
        })
    }

    /// Every array the tower holds (to materialize them at load).
    pub fn arrays(&self) -> Vec<Array> {
        let mut out = vec![self.patch_weight.clone(), self.inv_freq.clone(), self.ln_q.weight.clone(), self.ln_q.bias.clone()];
        let mut lin = |l: &Linear| crate::models::causal::linear_arrays(l, &mut out);
        lin(&self.merge_fc1);
        lin(&self.merge_fc2);
        for b in &self.blocks {
            for l in [&b.qkv, &b.proj, &b.fc1, &b.fc2] {
                lin(l);
            }
        }
        for b in &self.blocks {
            out.extend([b.norm1.weight.clone(), b.norm1.bias.clone(), b.norm2.weight.clone(), b.norm2.bias.clone()]);
        }
        out
    }

    /// cos/sin [N, 1, head_dim] of the 2-D rotary embedding for an (h × w)-patch image, in the
    /// preprocessor's row order (merge blocks, then row-major inside each block).
    fn rotary(&self, h: usize, w: usize) -> MlxResult<(Array, Array)> {
        let m = self.cfg.spatial_merge_size as usize;
        let quarter = ((self.cfg.embed_dim / self.cfg.num_heads) / 4) as usize;
        let mut pos = Vec::with_capacity(h * w * 2 * quarter);
        for by in 0..h / m {
            for bx in 0..w / m {
                for iy in 0..m {
                    for ix in 0..m {
                        let (y, x) = ((by * m + iy) as f32, (bx * m + ix) as f32);
                        pos.extend(std::iter::repeat(y).take(quarter));
                        pos.extend(std::iter::repeat(x).take(quarter));
                    }
                }
            }
        }
        let n = (h * w) as i32;
        let freqs = ops::multiply(&Array::from_slice(&pos, &[n, 2 * quarter as i32]), &self.inv_freq)?;
        let emb = ops::concatenate(&[freqs.clone(), freqs], 1)?.reshape(&[n, 1, 4 * quarter as i32])?;
        Ok((ops::cos(&emb)?, ops::sin(&emb)?))
    }

    /// Pixel rows of ONE image [N, C·T·P·P] with grid (t, h, w) → merged features
    /// [N / merge², hidden].
    pub fn forward(&self, pixels: &Array, grid_thw: [usize; 3]) -> MlxResult<Array> {
        let [t, h, w] = grid_thw;
        let mut x = ops::matmul(pixels, &self.patch_weight.transpose()?)?;
        let (cos, sin) = self.rotary(h, w)?;
        let (cos, sin) = if t > 1 {
            (ops::concatenate(&vec![cos; t], 0)?, ops::concatenate(&vec![sin; t], 0)?)
        } else {
            (cos, sin)
        };
        for b in &self.blocks {
            x = ops::add(&x, &self.attention(b, &b.norm1.forward(&x)?, &cos, &sin)?)?;
            let hdn = quick_gelu(&b.fc1.forward(&b.norm2.forward(&x)?)?)?;
            x = ops::add(&x, &b.fc2.forward(&hdn)?)?;
        }
        let m2 = self.cfg.spatial_merge_size * self.cfg.spatial_merge_size;
        let merged = self.ln_q.forward(&x)?.reshape(&[-1, self.cfg.embed_dim * m2])?;
        self.merge_fc2.forward(&gelu(&self.merge_fc1.forward(&merged)?)?)
    }

    fn attention(&self, b: &Block, x: &Array, cos: &Array, sin: &Array) -> MlxResult<Array> {
        let n = x.shape()[0];
        let heads = self.cfg.num_heads;
        let hd = self.cfg.embed_dim / heads;
        let qkv = b.qkv.forward(x)?.reshape(&[n, 3, heads, hd])?;
        let rot = |a: Array| -> MlxResult<Array> {
            let half = hd / 2;
            let rotated = ops::concatenate(&[ops::negative(&a.try_index((.., .., half..))?)?, a.try_index((.., .., ..half))?], 2)?;
            let out = ops::add(&ops::multiply(&a, cos)?, &ops::multiply(&rotated, sin)?)?;
            out.reshape(&[1, n, heads, hd])?.transpose_axes(&[0, 2, 1, 3])
        };
        let q = rot(qkv.try_index((.., 0, .., ..))?)?;
        let k = rot(qkv.try_index((.., 1, .., ..))?)?;
        let v = qkv.try_index((.., 2, .., ..))?.reshape(&[1, n, heads, hd])?.transpose_axes(&[0, 2, 1, 3])?;
        let scale = (hd as f32).powf(-0.5);
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, None, None)?;
        b.proj.forward(&out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, heads * hd])?)
    }
}
