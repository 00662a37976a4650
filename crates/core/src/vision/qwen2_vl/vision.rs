//! The Qwen2-VL / Qwen2.5-VL vision tower: a patch embedding (a Conv3d whose stride equals its
//! kernel, so a matrix product over each flattened C×T×P×P patch), pre-norm ViT blocks with
//! 2-D rotary embeddings (half the rotary frequencies follow the patch row, half the column),
//! then the patch merger: a norm, concatenation of each 2×2 block of neighbouring patches
//! (consecutive rows, by the preprocessor's ordering) and a GELU MLP into the language model's
//! width.
//!
//! Qwen2-VL: LayerNorm, quick-GELU MLP, full attention within each frame.
//! Qwen2.5-VL: RMSNorm, SwiGLU MLP, and window attention: the merged-token units are reordered
//! window by window (windows of `window_units`² units, row-major over the grid, the last ones
//! cut at the edges), every block except `fullatt_block_indexes` attends only within its
//! window, and the merger's output is put back in grid order by the inverse permutation.

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array};

use super::config::{TowerKind, VisionConfig};
use crate::error::{EngineError, EngineResult};
use crate::models::config::QuantizationConfig;
use crate::models::linear::Linear;
use crate::models::weights::WeightMap;
use crate::vision::activation::{gelu, quick_gelu};

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

enum Norm {
    Layer(LayerNorm),
    Rms(Array),
}

impl Norm {
    fn load(kind: TowerKind, w: &WeightMap, p: &str) -> EngineResult<Self> {
        Ok(match kind {
            TowerKind::Qwen2Vl => Norm::Layer(LayerNorm::load(w, p)?),
            TowerKind::Qwen25Vl => Norm::Rms(w.require(&format!("{p}.weight"))?),
        })
    }
    fn forward(&self, x: &Array) -> MlxResult<Array> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(weight) => fast::rms_norm(x, Some(weight), LN_EPS),
        }
    }
    fn arrays(&self, out: &mut Vec<Array>) {
        match self {
            Norm::Layer(n) => out.extend([n.weight.clone(), n.bias.clone()]),
            Norm::Rms(weight) => out.push(weight.clone()),
        }
    }
}

enum Mlp {
    QuickGelu { fc1: Linear, fc2: Linear },
    SwiGlu { gate: Linear, up: Linear, down: Linear },
}

impl Mlp {
    fn forward(&self, x: &Array) -> MlxResult<Array> {
        match self {
            Mlp::QuickGelu { fc1, fc2 } => fc2.forward(&quick_gelu(&fc1.forward(x)?)?),
            Mlp::SwiGlu { gate, up, down } => {
                let g = gate.forward(x)?;
                down.forward(&ops::multiply(&ops::multiply(&g, &ops::sigmoid(&g)?)?, &up.forward(x)?)?)
            }
        }
    }
    fn linears(&self) -> Vec<&Linear> {
        match self {
            Mlp::QuickGelu { fc1, fc2 } => vec![fc1, fc2],
            Mlp::SwiGlu { gate, up, down } => vec![gate, up, down],
        }
    }
}

struct Block {
    norm1: Norm,
    norm2: Norm,
    qkv: Linear,
    proj: Linear,
    mlp: Mlp,
    /// Attends over the whole frame (always for Qwen2-VL), else within windows.
    full_attention: bool,
}

pub struct VisionTower {
    cfg: VisionConfig,
    /// [embed_dim, C·T·P·P] in the pixel rows' (channel, frame, y, x) order.
    patch_weight: Array,
    blocks: Vec<Block>,
    ln_q: Norm,
    merge_fc1: Linear,
    merge_fc2: Linear,
    /// 1 / 10000^(2i / (head_dim/2)) for i < head_dim/4, twice (row frequencies, then column).
    inv_freq: Array,
}

impl VisionTower {
    /// `w` holds the tower's tensors without the `vision_tower.` prefix.
    /// `quant`: the checkpoint's settings, for tower layers stored quantized.
    pub fn load(cfg: VisionConfig, w: &WeightMap, quant: Option<&QuantizationConfig>) -> EngineResult<Self> {
        let lin = |name: &str| Linear::load(w, name, quant, false);
        let pw = w.require("patch_embed.proj.weight")?;
        let (e, c, t, p) = (cfg.embed_dim, cfg.in_chans, cfg.temporal_patch_size, cfg.patch_size);
        let shape = pw.shape().to_vec();
        let conv = |e: mlx_rs::error::Exception| EngineError::model_load(format!("patch_embed: {}", e.what()));
        // MLX layout [E, T, P, P, C] (mlx-community) or PyTorch layout [E, C, T, P, P] (HF),
        // kept as MLX's conv3d weight [E, T, P, P, C]
        let patch_weight = if shape == [e, t, p, p, c] {
            pw
        } else if shape == [e, c, t, p, p] {
            pw.transpose_axes(&[0, 2, 3, 4, 1]).and_then(|w| w.contiguous()).map_err(conv)?
        } else {
            return Err(EngineError::model_load(format!("patch_embed.proj.weight has shape {shape:?}, expected [{e}, {t}, {p}, {p}, {c}]")));
        };
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = format!("blocks.{i}");
            let mlp = match cfg.kind {
                TowerKind::Qwen2Vl => Mlp::QuickGelu { fc1: lin(&format!("{b}.mlp.fc1"))?, fc2: lin(&format!("{b}.mlp.fc2"))? },
                TowerKind::Qwen25Vl => Mlp::SwiGlu {
                    gate: lin(&format!("{b}.mlp.gate_proj"))?,
                    up: lin(&format!("{b}.mlp.up_proj"))?,
                    down: lin(&format!("{b}.mlp.down_proj"))?,
                },
            };
            blocks.push(Block {
                norm1: Norm::load(cfg.kind, w, &format!("{b}.norm1"))?,
                norm2: Norm::load(cfg.kind, w, &format!("{b}.norm2"))?,
                qkv: lin(&format!("{b}.attn.qkv"))?,
                proj: lin(&format!("{b}.attn.proj"))?,
                mlp,
                full_attention: cfg.kind == TowerKind::Qwen2Vl || cfg.fullatt_block_indexes.contains(&i),
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
            ln_q: Norm::load(cfg.kind, w, "merger.ln_q")?,
            merge_fc1: lin("merger.mlp.0")?,
            merge_fc2: lin("merger.mlp.2")?,
            inv_freq: inv,
            cfg,
        })
    }

    /// Every array the tower holds (to materialize them at load).
    pub fn arrays(&self) -> Vec<Array> {
        let mut out = vec![self.patch_weight.clone(), self.inv_freq.clone()];
        self.ln_q.arrays(&mut out);
        let mut linears = vec![&self.merge_fc1, &self.merge_fc2];
        for b in &self.blocks {
            linears.extend([&b.qkv, &b.proj]);
            linears.extend(b.mlp.linears());
        }
        for l in linears {
            crate::models::causal::linear_arrays(l, &mut out);
        }
        for b in &self.blocks {
            b.norm1.arrays(&mut out);
            b.norm2.arrays(&mut out);
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
        let m2 = (self.cfg.spatial_merge_size * self.cfg.spatial_merge_size) as usize;
        // A convolution with stride = kernel over each patch row, in the weights' dtype, as
        // mlx-vlm computes it: a matmul of the same numbers sums in another order, which in bf16
        // moves some outputs by an ulp (and f32 pixels would promote the whole tower).
        let (c, tp, p) = (self.cfg.in_chans, self.cfg.temporal_patch_size, self.cfg.patch_size);
        let n = pixels.shape()[0];
        let cells = pixels.as_dtype(self.patch_weight.dtype())?.reshape(&[n, c, tp, p, p])?.transpose_axes(&[0, 2, 3, 4, 1])?;
        let mut x = ops::conv3d(&cells, &self.patch_weight, (tp, p, p), None, None, None)?.reshape(&[n, -1])?;
        let (cos, sin) = self.rotary(h, w)?;
        let (mut cos, mut sin) = if t > 1 {
            (ops::concatenate(&vec![cos; t], 0)?, ops::concatenate(&vec![sin; t], 0)?)
        } else {
            (cos, sin)
        };
        // attention segments in rows: each frame, and (Qwen2.5-VL) each window
        let frames = vec![h * w; t];
        let windows = if self.cfg.kind == TowerKind::Qwen25Vl {
            let m = self.cfg.spatial_merge_size as usize;
            let plan = window_plan(t, h / m, w / m, self.cfg.window_units());
            let rows = unit_rows(&plan.order, m2);
            x = x.take_axis(&rows, 0)?;
            cos = cos.take_axis(&rows, 0)?;
            sin = sin.take_axis(&rows, 0)?;
            Some((plan.lengths.iter().map(|l| l * m2).collect::<Vec<_>>(), plan.order))
        } else {
            None
        };
        for b in &self.blocks {
            let segments = match (&windows, b.full_attention) {
                (Some((lens, _)), false) => lens,
                _ => &frames,
            };
            x = ops::add(&x, &self.attention(b, &b.norm1.forward(&x)?, &cos, &sin, segments)?)?;
            x = ops::add(&x, &b.mlp.forward(&b.norm2.forward(&x)?)?)?;
        }
        let merged = self.ln_q.forward(&x)?.reshape(&[-1, self.cfg.embed_dim * m2 as i32])?;
        let out = self.merge_fc2.forward(&gelu(&self.merge_fc1.forward(&merged)?)?)?;
        match windows {
            // back from window order to grid order
            Some((_, order)) => out.take_axis(&Array::from_slice(&inverse(&order), &[order.len() as i32]), 0),
            None => Ok(out),
        }
    }

    /// Self-attention within each run of `segments` consecutive rows (their sum is the row count).
    fn attention(&self, b: &Block, x: &Array, cos: &Array, sin: &Array, segments: &[usize]) -> MlxResult<Array> {
        let n = x.shape()[0];
        let heads = self.cfg.num_heads;
        let hd = self.cfg.embed_dim / heads;
        let qkv = b.qkv.forward(x)?.reshape(&[n, 3, heads, hd])?;
        let rot = |a: Array| -> MlxResult<Array> {
            let half = hd / 2;
            let rotated = ops::concatenate(&[ops::negative(&a.try_index((.., .., half..))?)?, a.try_index((.., .., ..half))?], 2)?;
            // computed against the f32 tables, then back to the activations' dtype (as mlx-vlm)
            let out = ops::add(&ops::multiply(&a, cos)?, &ops::multiply(&rotated, sin)?)?.as_dtype(a.dtype())?;
            out.reshape(&[1, n, heads, hd])?.transpose_axes(&[0, 2, 1, 3])
        };
        let q = rot(qkv.try_index((.., 0, .., ..))?)?;
        let k = rot(qkv.try_index((.., 1, .., ..))?)?;
        let v = qkv.try_index((.., 2, .., ..))?.reshape(&[1, n, heads, hd])?.transpose_axes(&[0, 2, 1, 3])?;
        let scale = (hd as f32).powf(-0.5);
        let out = if segments.len() <= 1 {
            crate::models::sdpa::full(&q, &k, &v, scale)?
        } else {
            let mut parts = Vec::with_capacity(segments.len());
            let mut start = 0i32;
            for &len in segments {
                let r = start..start + len as i32;
                let (qs, ks, vs) = (q.try_index((.., .., r.clone()))?, k.try_index((.., .., r.clone()))?, v.try_index((.., .., r))?);
                parts.push(crate::models::sdpa::full(&qs, &ks, &vs, scale)?);
                start += len as i32;
            }
            ops::concatenate(&parts, 2)?
        };
        b.proj.forward(&out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, heads * hd])?)
    }
}

/// Qwen2.5-VL's window order over a (t × gh × gw)-unit grid (units = merged tokens).
#[derive(Debug, PartialEq)]
struct WindowPlan {
    /// Unit indexes (grid order t, y, x) in window order.
    order: Vec<usize>,
    /// Units per window, in window order (no empty windows).
    lengths: Vec<usize>,
}

/// Windows of `ws` × `ws` units, row-major per frame; units inside a window row-major.
fn window_plan(t: usize, gh: usize, gw: usize, ws: usize) -> WindowPlan {
    let (mut order, mut lengths) = (Vec::with_capacity(t * gh * gw), vec![]);
    for f in 0..t {
        for wy in (0..gh).step_by(ws) {
            for wx in (0..gw).step_by(ws) {
                let before = order.len();
                for y in wy..(wy + ws).min(gh) {
                    for x in wx..(wx + ws).min(gw) {
                        order.push((f * gh + y) * gw + x);
                    }
                }
                lengths.push(order.len() - before);
            }
        }
    }
    WindowPlan { order, lengths }
}

/// Row indexes of units `order`, each unit being `m2` consecutive rows.
fn unit_rows(order: &[usize], m2: usize) -> Array {
    let rows: Vec<i32> = order.iter().flat_map(|&u| (0..m2).map(move |i| (u * m2 + i) as i32)).collect();
    Array::from_slice(&rows, &[rows.len() as i32])
}

fn inverse(order: &[usize]) -> Vec<i32> {
    let mut inv = vec![0i32; order.len()];
    for (i, &u) in order.iter().enumerate() {
        inv[u] = i as i32;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tile_the_grid_row_major_and_cut_at_edges() {
        // 3 × 5 units, windows of 2 × 2: a 2 × 3 grid of windows, the last row/column cut short
        let p = window_plan(1, 3, 5, 2);
        assert_eq!(p.lengths, vec![4, 4, 2, 2, 2, 1]);
        assert_eq!(&p.order[..6], &[0, 1, 5, 6, 2, 3]);
        assert_eq!(&p.order[10..], &[10, 11, 12, 13, 14]);
        let mut sorted = p.order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..15).collect::<Vec<_>>());
        // a grid that fits one window keeps grid order
        assert_eq!(window_plan(1, 2, 2, 4), WindowPlan { order: vec![0, 1, 2, 3], lengths: vec![4] });
        // frames never share a window
        assert_eq!(window_plan(2, 1, 1, 4).lengths, vec![1, 1]);
    }

    #[test]
    fn inverse_undoes_the_order() {
        let p = window_plan(1, 3, 5, 2);
        let inv = inverse(&p.order);
        for (i, &u) in p.order.iter().enumerate() {
            assert_eq!(inv[u] as usize, i);
        }
        let rows: Vec<i32> = unit_rows(&[2, 0], 4).as_slice::<i32>().to_vec();
        assert_eq!(rows, vec![8, 9, 10, 11, 0, 1, 2, 3]);
    }
}
