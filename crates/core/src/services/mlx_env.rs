//! MLX settings the engine chooses for its host process. MLX reads them from environment
//! variables the first time it needs them, so they are set once, before the engine thread (the
//! process's first MLX user) starts, and only where the host has not set them itself.

use std::sync::Once;

/// The variables the engine sets on `device` ('cpu' | 'cuda' | 'metal'), with their values.
///
/// - `MLX_ENABLE_CACHE_THRASHING_CHECK=0`, everywhere: MLX's CUDA backend keeps per-shape
///   kernels and graphs (cuDNN attention graphs, CUDA graphs) in LRU caches whose "thrashing
///   check" counts misses over the whole process life and throws once they pass twice the
///   capacity — a fuse, not a rate check. A long-running server sees ever new prompt lengths and
///   would fail every request after that point (seen in the speculative GPU benchmark after a
///   few hundred rounds). The caches keep evicting normally without it.
/// - `MLX_MAX_OPS_PER_BUFFER=1000`, `MLX_MAX_MB_PER_BUFFER=8000`, CUDA only: MLX records a
///   step's kernels into CUDA graphs and launches one every 100 operations or 1000 MB of inputs
///   (its defaults on Hopper). A 1-row decode step of a 1B model is ~300 operations over 2.5 GB
///   of weights, so it paid 3–4 graph updates and launches; with the larger limits it pays one.
///   Measured on an H200 (docs/adr/cuda-graph-limits.md): 1-stream decode 239 → 311 tok/s
///   (median of 5 interleaved pairs, better in all 5), 16-stream aggregate better in both pairs.
pub fn defaults_for(device: &str) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![("MLX_ENABLE_CACHE_THRASHING_CHECK", "0")];
    if device == "cuda" {
        vars.extend([("MLX_MAX_OPS_PER_BUFFER", "1000"), ("MLX_MAX_MB_PER_BUFFER", "8000")]);
    }
    vars
}

/// The defaults of `device` that `is_set` says the host has not set.
pub fn missing(device: &str, is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, &'static str)> {
    defaults_for(device).into_iter().filter(|(k, _)| !is_set(k)).collect()
}

/// Sets the missing defaults of this build's device, once per process.
pub fn apply_defaults() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let device = super::runtime_info::device();
        for (k, v) in missing(device, |k| std::env::var_os(k).is_some()) {
            // Before this crate's engine thread exists; MLX reads the variable later.
            std::env::set_var(k, v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_gets_larger_graph_limits_and_every_device_loses_the_cache_fuse() {
        let names = |d: &str| defaults_for(d).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(names("cpu"), ["MLX_ENABLE_CACHE_THRASHING_CHECK"]);
        assert_eq!(names("metal"), ["MLX_ENABLE_CACHE_THRASHING_CHECK"]);
        assert_eq!(defaults_for("cuda"), [
            ("MLX_ENABLE_CACHE_THRASHING_CHECK", "0"),
            ("MLX_MAX_OPS_PER_BUFFER", "1000"),
            ("MLX_MAX_MB_PER_BUFFER", "8000"),
        ]);
    }

    #[test]
    fn the_hosts_own_settings_win() {
        let set = missing("cuda", |k| k == "MLX_MAX_OPS_PER_BUFFER");
        assert_eq!(set, [("MLX_ENABLE_CACHE_THRASHING_CHECK", "0"), ("MLX_MAX_MB_PER_BUFFER", "8000")]);
        assert!(missing("cpu", |_| true).is_empty());
    }

    #[test]
    fn applied_on_this_machine() {
        apply_defaults();
        for (k, _) in defaults_for(crate::services::runtime_info::device()) {
            assert!(std::env::var_os(k).is_some(), "{k} not set");
        }
    }
}
