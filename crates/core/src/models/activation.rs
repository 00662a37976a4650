//! The gated MLP activation, silu(gate) · up, as one compiled element-wise kernel (mlx-lm
//! compiles the same function): one kernel per MLP instead of two (silu, then the product), which
//! counts where a decode step is bound by the host's per-operation cost (the GPU).

use std::cell::RefCell;

use mlx_rs::error::Exception;
use mlx_rs::transforms::compile::compile;
use mlx_rs::{ops, Array};

type Fused = Box<dyn for<'a> FnMut((&'a Array, &'a Array)) -> Result<Array, Exception>>;

fn silu_times_up((g, u): (&Array, &Array)) -> Result<Array, Exception> {
    ops::multiply(&ops::multiply(g, &ops::sigmoid(g)?)?, u)
}

thread_local! {
    /// One compiled function per thread (the engine thread, in practice), kept: mlx-rs gives each
    /// `compile` call a fresh id and erases its trace when the function drops, so compiling per
    /// call would trace again for every layer of every step. Shapeless: one trace serves every
    /// token count (a new dtype traces once more).
    static FUSED: RefCell<Fused> = RefCell::new({
        let mut compiled = compile(silu_times_up, true);
        Box::new(move |args| compiled(args))
    });
}

pub(crate) fn swiglu(gate: &Array, up: &Array) -> Result<Array, Exception> {
    FUSED.with(|f| (f.borrow_mut())((gate, up)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_silu_times_up() {
        let key = mlx_rs::random::key(11).unwrap();
        let g = mlx_rs::random::normal::<f32>(&[3, 5, 8], None, None, Some(&key)).unwrap();
        let u = mlx_rs::random::normal::<f32>(&[3, 5, 8], None, None, Some(&mlx_rs::random::key(12).unwrap())).unwrap();
        let want = ops::multiply(&mlx_rs::nn::silu(&g).unwrap(), &u).unwrap();
        for shape in [[3, 5, 8], [1, 1, 8]] {
            let (gs, us, ws) = if shape[0] == 3 { (g.clone(), u.clone(), want.clone()) } else {
                use mlx_rs::ops::indexing::TryIndexOp;
                (g.try_index((0..1, 0..1, ..)).unwrap(), u.try_index((0..1, 0..1, ..)).unwrap(), want.try_index((0..1, 0..1, ..)).unwrap())
            };
            let got = swiglu(&gs, &us).unwrap();
            assert_eq!(got.shape(), &shape);
            let d = ops::max(&ops::abs(&ops::subtract(&got, &ws).unwrap()).unwrap(), None).unwrap().item_cast::<f32>();
            assert!(d <= 1e-6, "swiglu differs from silu(g)*u by {d} at {shape:?}");
        }
    }
}
