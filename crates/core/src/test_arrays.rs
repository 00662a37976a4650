//! Array helpers shared by unit tests.

use mlx_rs::{ops, Array};

/// Standard-normal f32 values of `shape` from the seeded key `seed`.
pub(crate) fn normal(shape: &[i32], seed: u64) -> Array {
    mlx_rs::random::normal::<f32>(shape, None, None, Some(&mlx_rs::random::key(seed).unwrap())).unwrap()
}

/// max |a − b| / max |b|.
pub(crate) fn max_rel_diff(a: &Array, b: &Array) -> f32 {
    let d = ops::max(&ops::abs(&ops::subtract(a, b).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
    d / ops::max(&ops::abs(b).unwrap(), None).unwrap().item_cast::<f32>()
}
