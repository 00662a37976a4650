//! Stream timing and peak RSS shared by the engine benchmarks (bench_engine, bench_vision).

use std::time::Instant;

use mlx_serving_core::generation::Chunk;
use mlx_serving_core::StreamHandle;

pub struct Timing {
    pub ttft: f64,
    pub total: f64,
    pub tokens: usize,
    /// The generated ids, in order.
    pub ids: Vec<u32>,
}

/// Reads a stream to its end: time to the first token chunk and to the end, the ids.
pub async fn timed(mut s: StreamHandle, start: Instant) -> Timing {
    let (mut first, mut tokens, mut ids) = (None, 0usize, Vec::new());
    loop {
        let batch = s.next_batch().await;
        if batch.is_empty() {
            break;
        }
        for c in batch {
            match c {
                Chunk::Token { token_id, .. } => {
                    tokens += 1;
                    ids.push(token_id);
                    first.get_or_insert_with(|| start.elapsed().as_secs_f64());
                }
                Chunk::Error(e) => panic!("stream failed: {e}"),
                Chunk::Metadata(_) => {}
            }
        }
    }
    let total = start.elapsed().as_secs_f64();
    Timing { ttft: first.unwrap_or(total), total, tokens, ids }
}

/// The process's peak resident set (VmHWM), bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) * 1024))
        .unwrap_or(0)
}
