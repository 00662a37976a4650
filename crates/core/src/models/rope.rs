//! Rotary position embedding as configured (default, linear scaling, Llama-3 scaling, Phi-3's
//! su/longrope scaling), applied with MLX's fused `fast::rope`. For Llama-3 and longrope scaling
//! the per-frequency periods are computed once at load time with MLX ops (same formula and dtype
//! as the reference implementation) and passed as `freqs`; longrope also scales the rotated
//! features by its attention factor before rotating.

use mlx_rs::{fast, ops, Array};

use super::config::RopeScaling;

/// Explicit rotary tables for one sequence (cos and sin, [1, 1, L, head_dim]), applied as
/// `x·cos + rotate_half(x)·sin` instead of the configured rope: the hook multimodal position
/// schemes (Qwen2-VL's M-RoPE, where image tokens carry 3-D positions) use. The tables are in the
/// activations' dtype (their builder casts them), so the rotation stays in it.
pub struct RotaryTables {
    pub cos: Array,
    pub sin: Array,
}

impl RotaryTables {
    pub(crate) fn apply(&self, x: &Array) -> Result<Array, mlx_rs::error::Exception> {
        use mlx_rs::ops::indexing::TryIndexOp;
        let half = x.shape()[3] / 2;
        let x1 = x.try_index((.., .., .., ..half))?;
        let x2 = x.try_index((.., .., .., half..))?;
        let rotated = ops::concatenate(&[ops::negative(&x2)?, x1], 3)?;
        ops::add(&ops::multiply(x, &self.cos)?, &ops::multiply(&rotated, &self.sin)?)
    }
}

pub struct Rope {
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
    /// Multiplies the `dims` rotated features before rotation (longrope's attention factor).
    input_scale: f32,
}

impl Rope {
    pub fn new(dims: i32, base: f32, traditional: bool, scaling: &RopeScaling) -> Result<Self, mlx_rs::error::Exception> {
        let plain = |scale: f32| Rope { dims, traditional, base: Some(base), scale, freqs: None, input_scale: 1.0 };
        match scaling {
            RopeScaling::None => Ok(plain(1.0)),
            RopeScaling::Linear { factor } => Ok(plain(1.0 / factor)),
            &RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let freqs = llama3_freqs(dims, base, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)?;
                Ok(Rope { dims, traditional, base: None, scale: 1.0, freqs: Some(freqs), input_scale: 1.0 })
            }
            RopeScaling::LongRope { long_factor, original_max_position_embeddings, max_position_embeddings, .. } => {
                if long_factor.len() != (dims / 2) as usize {
                    return Err(mlx_rs::error::Exception::custom(format!(
                        "rope_scaling.long_factor has {} entries, the rotary dimension {dims} needs {}",
                        long_factor.len(),
                        dims / 2
                    )));
                }
                // As mlx-lm: the long factors at every position (not only past the original
                // context), and the attention factor sqrt(1 + ln(s) / ln(original)) for s > 1.
                let periods = ops::power(&Array::from_f32(base), &ops::divide(&ops::arange::<_, f32>(0, dims, 2)?, &Array::from_f32(dims as f32))?)?;
                let freqs = ops::multiply(&Array::from_slice(long_factor, &[long_factor.len() as i32]), &periods)?;
                let factor = (*max_position_embeddings as f64) / (*original_max_position_embeddings as f64);
                let input_scale = if factor <= 1.0 { 1.0 } else { (1.0 + factor.ln() / (*original_max_position_embeddings as f64).ln()).sqrt() as f32 };
                Ok(Rope { dims, traditional: false, base: None, scale: 1.0, freqs: Some(freqs), input_scale })
            }
        }
    }

    /// x: [B, heads, L, head_dim]; positions start at `offset`.
    pub fn apply(&self, x: &Array, offset: i32) -> Result<Array, mlx_rs::error::Exception> {
        self.with_input_scale(x, |x| fast::rope(x, self.dims, self.traditional, self.base, self.scale, offset, self.freqs.as_ref()))
    }

    /// x: [B, heads, 1, head_dim], entry b at position `offsets[b]` (int32 [B]): the stacked
    /// decode rows of a batch, each at its own offset, in one call.
    pub fn apply_at(&self, x: &Array, offsets: &Array) -> Result<Array, mlx_rs::error::Exception> {
        self.with_input_scale(x, |x| fast::rope_dynamic(x, self.dims, self.traditional, self.base, self.scale, offsets, self.freqs.as_ref()))
    }

    /// The parameters of the fused decode kernel (`fused_decode::decode_heads`), when it can
    /// rotate these heads: every feature rotated (no partial rotary) and no input scaling.
    pub(crate) fn decode_params(&self, head_dim: i32) -> Option<super::fused_decode::RopeParams> {
        if self.dims != head_dim || self.input_scale != 1.0 {
            return None;
        }
        Some(super::fused_decode::RopeParams {
            traditional: self.traditional,
            base: self.base.unwrap_or(0.0),
            freqs: match &self.freqs {
                Some(f) => Some(f.as_dtype(mlx_rs::Dtype::Float32).ok()?),
                None => None,
            },
            scale: self.scale,
        })
    }

    /// Runs `rotate` on `x`, first scaled by longrope's attention factor where there is one.
    fn with_input_scale(&self, x: &Array, rotate: impl FnOnce(&Array) -> Result<Array, mlx_rs::error::Exception>) -> Result<Array, mlx_rs::error::Exception> {
        if self.input_scale == 1.0 {
            rotate(x)
        } else {
            rotate(&self.scale_rotated(x)?)
        }
    }

    fn scale_rotated(&self, x: &Array) -> Result<Array, mlx_rs::error::Exception> {
        let s = Array::from_f32(self.input_scale).as_dtype(x.dtype())?;
        let head_dim = *x.shape().last().unwrap();
        if self.dims >= head_dim {
            return ops::multiply(x, &s);
        }
        let parts = x.split_at_indices(&[self.dims], -1)?;
        ops::concatenate(&[ops::multiply(&parts[0], &s)?, parts[1].clone()], -1)
    }
}

/// Periods `base^(2i/d)`, stretched by `factor` for long wavelengths and smoothly interpolated
/// in the band between the low- and high-frequency cut-offs (Llama 3.1's rope_type "llama3").
fn llama3_freqs(dims: i32, base: f32, factor: f32, low: f32, high: f32, old_ctx: f32) -> Result<Array, mlx_rs::error::Exception> {
    let exps = ops::divide(&ops::arange::<_, f32>(0, dims, 2)?, &Array::from_f32(dims as f32))?;
    let freqs = ops::power(&Array::from_f32(base), &exps)?;
    let wavelens = ops::multiply(&freqs, &Array::from_f32(2.0 * std::f32::consts::PI))?;
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    let stretched = ops::multiply(&freqs, &Array::from_f32(factor))?;
    let freqs = ops::select(&ops::gt(&wavelens, &Array::from_f32(low_wavelen))?, &stretched, &freqs)?;
    let is_medium = ops::logical_and(
        &ops::gt(&wavelens, &Array::from_f32(high_wavelen))?,
        &ops::lt(&wavelens, &Array::from_f32(low_wavelen))?,
    )?;
    // smooth = (old_ctx / wavelen - low) / (high - low); smoothed = freqs / ((1 - smooth)/factor + smooth)
    let smooth = ops::divide(
        &ops::subtract(&ops::divide(&Array::from_f32(old_ctx), &wavelens)?, &Array::from_f32(low))?,
        &Array::from_f32(high - low),
    )?;
    let denom = ops::add(
        &ops::divide(&ops::subtract(&Array::from_f32(1.0), &smooth)?, &Array::from_f32(factor))?,
        &smooth,
    )?;
    let smoothed = ops::divide(&freqs, &denom)?;
    ops::select(&is_medium, &smoothed, &freqs)
}
