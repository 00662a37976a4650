//! Rotary position embedding as configured (default, linear scaling, Llama-3 scaling), applied
//! with MLX's fused `fast::rope`. For Llama-3 scaling the per-frequency periods are computed once
//! at load time with MLX ops (same formula and dtype as the reference implementation) and passed
//! as `freqs`.

use mlx_rs::{fast, ops, Array};

use super::config::RopeScaling;

pub struct Rope {
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
}

impl Rope {
    pub fn new(dims: i32, base: f32, traditional: bool, scaling: &RopeScaling) -> Result<Self, mlx_rs::error::Exception> {
        match *scaling {
            RopeScaling::None => Ok(Rope { dims, traditional, base: Some(base), scale: 1.0, freqs: None }),
            RopeScaling::Linear { factor } => Ok(Rope { dims, traditional, base: Some(base), scale: 1.0 / factor, freqs: None }),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let freqs = llama3_freqs(dims, base, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)?;
                Ok(Rope { dims, traditional, base: None, scale: 1.0, freqs: Some(freqs) })
            }
        }
    }

    /// x: [B, heads, L, head_dim]; positions start at `offset`.
    pub fn apply(&self, x: &Array, offset: i32) -> Result<Array, mlx_rs::error::Exception> {
        fast::rope(x, self.dims, self.traditional, self.base, self.scale, offset, self.freqs.as_ref())
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
