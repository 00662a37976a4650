//! MLX settings the engine chooses for its host process. MLX reads them from environment
//! variables the first time it needs them, so they are set once, before the engine thread (the
//! process's first MLX user) starts, and only where the host has not set them itself.

use std::sync::Once;

/// The variables the engine sets, with their values (the same on every backend).
///
/// - `MLX_ENABLE_CACHE_THRASHING_CHECK=0`, everywhere: MLX's CUDA backend keeps per-shape
///   kernels and graphs (cuDNN attention graphs, CUDA graphs) in LRU caches whose "thrashing
///   check" counts misses over the whole process life and throws once they pass twice the
///   capacity — a fuse, not a rate check. A long-running server sees ever new prompt lengths and
///   would fail every request after that point (seen in the speculative GPU benchmark after a
///   few hundred rounds). The caches keep evicting normally without it.
///
/// MLX's CUDA graph limits (`MLX_MAX_OPS_PER_BUFFER` / `MLX_MAX_MB_PER_BUFFER`) are left at
/// MLX's defaults: raising them looked faster on one host and was 1.5–1.9× slower on another
/// (docs/adr/cuda-graph-limits.md).
pub const DEFAULTS: &[(&str, &str)] = &[("MLX_ENABLE_CACHE_THRASHING_CHECK", "0")];

/// The defaults that `is_set` says the host has not set.
pub fn missing(is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, &'static str)> {
    DEFAULTS.iter().copied().filter(|(k, _)| !is_set(k)).collect()
}

/// Sets the missing defaults, once per process.
pub fn apply_defaults() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in missing(|k| std::env::var_os(k).is_some()) {
            // Before this crate's engine thread exists; MLX reads the variable later.
            std::env::set_var(k, v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cache_fuse_is_set_and_mlxs_graph_limits_stay() {
        assert_eq!(DEFAULTS, [("MLX_ENABLE_CACHE_THRASHING_CHECK", "0")]);
    }

    #[test]
    fn the_hosts_own_settings_win() {
        assert_eq!(missing(|_| false), [("MLX_ENABLE_CACHE_THRASHING_CHECK", "0")]);
        assert!(missing(|k| k == "MLX_ENABLE_CACHE_THRASHING_CHECK").is_empty());
        assert!(missing(|_| true).is_empty());
    }

    #[test]
    fn applied_on_this_machine() {
        apply_defaults();
        for (k, _) in DEFAULTS {
            assert!(std::env::var_os(k).is_some(), "{k} not set");
        }
    }
}
