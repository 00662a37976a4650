//! The towers' and projectors' GELU activations, computed in the activations' own dtype.
//! mlx-vlm writes their constants as Python scalars, which MLX converts to the other operand's
//! dtype; a Rust f32 array would instead promote a bf16 tensor to f32 (and everything after it,
//! up to the language model's prefill) — slower on the GPU and not what the reference computes.

use mlx_rs::error::Exception;
use mlx_rs::{ops, Array};

/// `v` as a 0-d array of `like`'s dtype (what MLX does with a Python scalar operand).
pub(crate) fn scalar_like(v: f32, like: &Array) -> Result<Array, Exception> {
    Array::from_f32(v).as_dtype(like.dtype())
}

/// x · sigmoid(1.702 x) (CLIP's and Qwen2-VL's "quick_gelu").
pub(crate) fn quick_gelu(x: &Array) -> Result<Array, Exception> {
    ops::multiply(x, &ops::sigmoid(&ops::multiply(x, &scalar_like(1.702, x)?)?)?)
}

/// The exact (erf) GELU, x · (1 + erf(x / √2)) / 2, in MLX's order of operations.
pub(crate) fn gelu(x: &Array) -> Result<Array, Exception> {
    let e = ops::erf(&ops::divide(x, &scalar_like(std::f32::consts::SQRT_2, x)?)?)?;
    ops::divide(&ops::multiply(x, &ops::add(&e, &scalar_like(1.0, x)?)?)?, &scalar_like(2.0, x)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_the_input_dtype() {
        let x = mlx_rs::random::normal::<f32>(&[4, 8], None, None, Some(&mlx_rs::random::key(3).unwrap())).unwrap();
        for dtype in [mlx_rs::Dtype::Float32, mlx_rs::Dtype::Bfloat16, mlx_rs::Dtype::Float16] {
            let x = x.as_dtype(dtype).unwrap();
            assert_eq!(gelu(&x).unwrap().dtype(), dtype);
            assert_eq!(quick_gelu(&x).unwrap().dtype(), dtype);
        }
    }

    #[test]
    fn equal_the_formulas() {
        let x = mlx_rs::random::normal::<f32>(&[64], None, None, Some(&mlx_rs::random::key(4).unwrap())).unwrap();
        let (g, q) = (gelu(&x).unwrap(), quick_gelu(&x).unwrap());
        for (i, &v) in x.as_slice::<f32>().iter().enumerate() {
            let want_g = 0.5 * v * (1.0 + libm_erf(v / std::f32::consts::SQRT_2));
            let want_q = v / (1.0 + (-1.702 * v).exp());
            assert!((g.as_slice::<f32>()[i] - want_g).abs() < 1e-5, "gelu({v})");
            assert!((q.as_slice::<f32>()[i] - want_q).abs() < 1e-5, "quick_gelu({v})");
        }
    }

    /// erf by its series (|x| is small here), so the test does not lean on MLX's own erf.
    fn libm_erf(x: f32) -> f32 {
        let x = x as f64;
        let mut sum = 0.0;
        let mut term = x;
        for n in 0..60 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        (sum * 2.0 / std::f64::consts::PI.sqrt()) as f32
    }
}
