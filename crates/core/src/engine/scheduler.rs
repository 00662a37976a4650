//! Continuous batching: each engine step runs ONE forward pass over every active stream —
//! all decoding streams contribute their last token, and prefilling streams contribute prompt
//! chunks within a per-step token budget (decode first, so long prompts never stall running
//! streams). Rows join and leave between steps; each row keeps its own KV cache, sampler and RNG
//! key, so a greedy or seeded request gives the same ids alone or batched.
//!
//! Speculative rows (a `draftModel`, prompt fed) take a separate per-stream path each step,
//! before the batched pass: draft proposals plus one target verification pass over that row
//! alone (`GenerationStream::speculative_step`). Their prefill still joins the batched pass.
//! Vision rows (a prompt with images, `generation/vision_step.rs`) also step alone, prefill
//! included: their M-RoPE positions are not the batched pass's (documented fallback).
//! Each row's output depends only on its own caches, sampler and RNG, so a batch mixing
//! speculative and normal rows gives every row the same ids as alone.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::Array;
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::EngineError;
use crate::generation::stream::{GenerationStream, Step};
use crate::models::Segment;

/// Prompt tokens fed per step across all prefilling streams while other streams decode
/// (chunked prefill: a long prompt delays the running streams by at most one such chunk).
pub const PREFILL_BUDGET: usize = 512;
/// The chunk when no stream is waiting for its next token: larger chunks cost fewer passes
/// (mlx-lm's prefill step is 2048 too).
pub const PREFILL_BUDGET_IDLE: usize = 2048;

/// `getBatchStats().generation` (spec §15).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationBatchStats {
    pub steps: u64,
    pub avg_batch_size: f64,
    pub max_batch_size: u32,
    /// streams waiting for (or in) prefill at the last step
    pub queued: u32,
    /// Decode rows whose input was the previous step's sample still on the device (pipelined
    /// decode: the host did not wait for the device between those steps). Not in the spec's
    /// shape; read through `Engine::pipelined_rows`.
    #[serde(skip)]
    pub pipelined_rows: u64,
    #[serde(skip)]
    rows_total: u64,
}

impl GenerationBatchStats {
    fn record(&mut self, rows: usize, queued: usize) {
        self.steps += 1;
        self.rows_total += rows as u64;
        self.avg_batch_size = self.rows_total as f64 / self.steps as f64;
        self.max_batch_size = self.max_batch_size.max(rows as u32);
        self.queued = queued as u32;
    }
}

pub type SharedBatchStats = Arc<Mutex<GenerationBatchStats>>;

pub fn reset(stats: &SharedBatchStats) {
    *stats.lock() = GenerationBatchStats::default();
}

/// Runs one batched step over `streams`. Streams that ended are removed; those whose KV cache
/// is intact (finished or cancelled, not failed) are returned for prompt-prefix reuse.
pub fn step(streams: &mut VecDeque<GenerationStream>, stats: &SharedBatchStats) -> Vec<GenerationStream> {
    let mut ended = take_where(streams, |s| s.poll_control());
    // Speculative rows: one round each, on their own (a failing round ends only that row).
    let mut spec_rows = 0;
    let mut spec_failed = Vec::new();
    ended.extend(take_where(streams, |s| {
        if !s.steps_alone() {
            return false;
        }
        spec_rows += 1;
        match catch_unwind(AssertUnwindSafe(|| s.solo_step())) {
            Ok(Ok(Step::Continue)) => false,
            Ok(Ok(Step::Done)) => true,
            Ok(Err(e)) => {
                s.fail(e);
                spec_failed.push(s.id().to_string());
                true
            }
            Err(_) => {
                s.fail(EngineError::generation("internal error during a per-stream decoding step"));
                spec_failed.push(s.id().to_string());
                true
            }
        }
    }));
    if !spec_failed.is_empty() {
        // A failed row's caches are not reusable: drop it instead of handing it back.
        ended.retain(|s| !spec_failed.iter().any(|id| id == s.id()));
    }
    if streams.iter().all(|s| s.steps_alone()) {
        if spec_rows > 0 {
            stats.lock().record(spec_rows, 0);
        }
        return ended;
    }
    // Plan: decoding rows first, then prompt chunks within the budget, in arrival order.
    let mut plan: Vec<Planned> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        if s.steps_alone() {
            continue; // stepped above
        }
        if !s.is_prefilling() {
            let (tokens, logits) = s.next_input(0);
            plan.push(Planned { row: i, tokens, logits, lazy: s.lazy_input() });
        }
    }
    let mut budget = if plan.is_empty() && spec_rows == 0 { PREFILL_BUDGET_IDLE } else { PREFILL_BUDGET };
    for (i, s) in streams.iter().enumerate() {
        if s.is_prefilling() && budget > 0 && !s.steps_alone() {
            let (tokens, logits) = s.next_input(budget);
            budget -= tokens.len().min(budget);
            plan.push(Planned { row: i, tokens, logits, lazy: None });
        }
    }
    let queued = streams.iter().filter(|s| s.is_prefilling()).count();
    {
        let mut st = stats.lock();
        st.record(plan.len() + spec_rows, queued);
        st.pipelined_rows += plan.iter().filter(|p| p.lazy.is_some()).count() as u64;
    }

    let result = catch_unwind(AssertUnwindSafe(|| run_plan(streams, &plan, &mut ended)));
    let failed: Option<EngineError> = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(EngineError::generation("internal error during a forward pass")),
    };
    if let Some(err) = failed {
        // The pass as a whole failed: every row in it ends with the error.
        let rows: Vec<usize> = plan.iter().map(|p| p.row).collect();
        let mut idx = 0;
        streams.retain_mut(|s| {
            let hit = rows.contains(&idx);
            idx += 1;
            if hit {
                s.fail(err.clone());
            }
            !hit
        });
    }
    ended
}

/// One row of a step's forward pass.
struct Planned {
    row: usize,
    tokens: Vec<u32>,
    /// Whether the pass must produce logits for the row's last token.
    logits: bool,
    /// The input id still on the device (pipelined decode; `tokens` is then a placeholder).
    lazy: Option<Array>,
}

/// Removes and returns the streams for which `pred` is true, keeping the others in order.
fn take_where(streams: &mut VecDeque<GenerationStream>, mut pred: impl FnMut(&mut GenerationStream) -> bool) -> Vec<GenerationStream> {
    let mut taken = Vec::new();
    let mut kept = VecDeque::with_capacity(streams.len());
    for mut s in streams.drain(..) {
        if pred(&mut s) {
            taken.push(s);
        } else {
            kept.push_back(s);
        }
    }
    *streams = kept;
    taken
}

fn run_plan(streams: &mut VecDeque<GenerationStream>, plan: &[Planned], ended: &mut Vec<GenerationStream>) -> Result<(), EngineError> {
    // One forward pass per model among the planned rows (streams of different models can be
    // active at once); rows keep plan order within their group.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (p, planned) in plan.iter().enumerate() {
        let m = streams[planned.row].model();
        match groups.iter_mut().find(|g| Rc::ptr_eq(&streams[plan[g[0]].row].model(), &m)) {
            Some(g) => g.push(p),
            None => groups.push(vec![p]),
        }
    }
    let mut sampled: Vec<(usize, Array, Array)> = Vec::new();
    for group in &groups {
        let model = streams[plan[group[0]].row].model();
        let logits = {
            let mut by_index: Vec<Option<&mut GenerationStream>> = streams.iter_mut().map(Some).collect();
            let mut segs: Vec<Segment<'_>> = Vec::with_capacity(group.len());
            for &p in group {
                let planned = &plan[p];
                let s = by_index[planned.row].take().expect("a stream is planned once");
                segs.push(Segment { tokens: &planned.tokens, lazy: planned.lazy.as_ref(), cache: s.cache_mut(), logits: planned.logits });
            }
            model.model.forward_segments(&mut segs)?
        };
        let mut row = 0;
        for &p in group {
            let planned = &plan[p];
            streams[planned.row].fed(&planned.tokens);
            if planned.logits {
                // Sample every row that produced logits; all rows are queued together below.
                let (tok, lp) = streams[planned.row].sample_lazy(&logits.try_index(row)?)?;
                sampled.push((planned.row, tok, lp));
                row += 1;
            }
        }
    }
    // Queue this step's work, then read the samples the previous step left on the device (fed
    // lazily above) while it runs: the host's detokenizing overlaps the device's compute.
    let arrays: Vec<&Array> = sampled.iter().flat_map(|(_, t, l)| [t, l]).collect();
    mlx_rs::transforms::async_eval(arrays)?;
    let mut done = Vec::new();
    for p in plan {
        if let Some(Step::Done) = streams[p.row].settle_fed() {
            done.push(p.row);
        }
    }
    for (i, tok, lp) in sampled {
        // A row that ended on its previous sample drops this one (computed one step ahead).
        if done.contains(&i) {
            continue;
        }
        if let Step::Done = streams[i].take_sample(tok, lp) {
            done.push(i);
        }
    }
    let mut idx = 0;
    ended.extend(take_where(streams, |_| {
        let hit = done.contains(&idx);
        idx += 1;
        hit
    }));
    Ok(())
}
