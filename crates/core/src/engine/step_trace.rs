//! Per-step timing of the batched pass, for profiling on machines without a profiler
//! (`MLX_SERVING_STEP_TRACE=1`): how long the host spent building and queueing a step, and how
//! long it then waited for the previous step's samples (the device's share). Printed to stderr
//! per stacked-row count when the engine shuts down. Off by default: one env lookup per process.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MLX_SERVING_STEP_TRACE").is_ok_and(|v| v == "1"))
}

thread_local! {
    /// (stacked rows, other rows, build, wait)
    static STEPS: RefCell<Vec<(usize, usize, Duration, Duration)>> = const { RefCell::new(Vec::new()) };
}

pub fn record(stacked: usize, other: usize, build: Duration, wait: Duration) {
    if enabled() {
        STEPS.with(|s| s.borrow_mut().push((stacked, other, build, wait)));
    }
}

/// Prints and clears this thread's record: per (stacked, other) row counts, steps and median
/// build / wait / total milliseconds.
pub fn report() {
    if !enabled() {
        return;
    }
    let steps = STEPS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut keys: Vec<(usize, usize)> = steps.iter().map(|s| (s.0, s.1)).collect();
    keys.sort();
    keys.dedup();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for key in keys {
        let mut b: Vec<f64> = steps.iter().filter(|s| (s.0, s.1) == key).map(|s| ms(s.2)).collect();
        let mut w: Vec<f64> = steps.iter().filter(|s| (s.0, s.1) == key).map(|s| ms(s.3)).collect();
        let mut t: Vec<f64> = steps.iter().filter(|s| (s.0, s.1) == key).map(|s| ms(s.2 + s.3)).collect();
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        eprintln!(
            "step-trace stacked={} other={} steps={} build_ms={:.3} wait_ms={:.3} total_ms={:.3}",
            key.0,
            key.1,
            b.len(),
            med(&mut b),
            med(&mut w),
            med(&mut t)
        );
    }
}
