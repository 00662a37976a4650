//! Per-step timing of the batched pass, for profiling on machines without a profiler
//! (`MLX_SERVING_STEP_TRACE=1`): how long the host spent building a step's graph, handing it to
//! MLX (`async_eval`: on CUDA that encodes and launches the kernels), and then waiting for the
//! previous step's samples (the device's share). Printed to stderr per row count when the engine
//! shuts down. Off by default: one env lookup per process.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

/// Whether steps are being timed (callers read the clock only then).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MLX_SERVING_STEP_TRACE").is_ok_and(|v| v == "1"))
}

thread_local! {
    /// (stacked rows, other rows, [build, eval, wait])
    static STEPS: RefCell<Vec<(usize, usize, [Duration; 3])>> = const { RefCell::new(Vec::new()) };
    /// Speculative rounds: (proposals, accepted, [draft, verify build, wait, rollback])
    static ROUNDS: RefCell<Vec<(usize, usize, [Duration; 4])>> = const { RefCell::new(Vec::new()) };
}

/// One speculative round of `k` proposals, `accepted` of them kept: host time building and
/// queueing the draft passes, building the verification pass, waiting for the device, and
/// rolling the caches back.
pub fn record_round(k: usize, accepted: usize, times: [Duration; 4]) {
    if enabled() {
        ROUNDS.with(|s| s.borrow_mut().push((k, accepted, times)));
    }
}

/// One step: graph build, `async_eval`, wait for the previous samples.
pub fn record(stacked: usize, other: usize, times: [Duration; 3]) {
    if enabled() {
        STEPS.with(|s| s.borrow_mut().push((stacked, other, times)));
    }
}

/// Prints and clears this thread's record: per (stacked, other) row counts, steps and median
/// build / eval / wait / total milliseconds.
pub fn report() {
    if !enabled() {
        return;
    }
    report_rounds();
    let steps = STEPS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut keys: Vec<(usize, usize)> = steps.iter().map(|s| (s.0, s.1)).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let of = |f: &dyn Fn(&[Duration; 3]) -> Duration| -> f64 { median(steps.iter().filter(|s| (s.0, s.1) == key).map(|s| f(&s.2).as_secs_f64() * 1e3).collect()) };
        let n = steps.iter().filter(|s| (s.0, s.1) == key).count();
        eprintln!(
            "step-trace stacked={} other={} steps={n} build_ms={:.3} eval_ms={:.3} wait_ms={:.3} total_ms={:.3}",
            key.0,
            key.1,
            of(&|t| t[0]),
            of(&|t| t[1]),
            of(&|t| t[2]),
            of(&|t| t[0] + t[1] + t[2])
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn report_rounds() {
    let rounds = ROUNDS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut ks: Vec<usize> = rounds.iter().map(|r| r.0).collect();
    ks.sort();
    ks.dedup();
    for k in ks {
        let of_k: Vec<_> = rounds.iter().filter(|r| r.0 == k).collect();
        let ms = |i: usize| median(of_k.iter().map(|r| r.2[i].as_secs_f64() * 1e3).collect());
        let total = median(of_k.iter().map(|r| r.2.iter().sum::<Duration>().as_secs_f64() * 1e3).collect());
        let accepted = of_k.iter().map(|r| r.1).sum::<usize>() as f64 / of_k.len() as f64;
        eprintln!(
            "round-trace k={k} rounds={} mean_accepted={accepted:.2} draft_ms={:.3} verify_build_ms={:.3} wait_ms={:.3} rollback_ms={:.3} total_ms={total:.3}",
            of_k.len(),
            ms(0),
            ms(1),
            ms(2),
            ms(3)
        );
    }
}
