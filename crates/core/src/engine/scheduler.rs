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
//!
//! Plain decode rows of one model, once two or more decode together, are stacked
//! (`decode_batch.rs`, `generation/batch_kv.rs`): their caches live in one buffer per layer and
//! the pass handles them as one segment, so a step's operation count does not grow with the
//! number of rows.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::Array;
use parking_lot::Mutex;
use serde::Serialize;

use super::decode_batch::DecodeBatches;
use crate::error::EngineError;
use crate::generation::sampler;
use crate::generation::stream::{DeviceSample, GenerationStream, Step};
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
    /// Decode rows stepped stacked in a `BatchKv` (one shared cache per layer). Not in the
    /// spec's shape; read through `Engine::stacked_rows`.
    #[serde(skip)]
    pub stacked_rows: u64,
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
pub fn step(streams: &mut VecDeque<GenerationStream>, batches: &mut DecodeBatches, stats: &SharedBatchStats) -> Vec<GenerationStream> {
    batches.reconcile(streams);
    let mut ended = take_where(streams, |s| s.poll_control());
    batches.release(&mut ended);
    let mut ended = step_rows(streams, batches, stats, ended);
    batches.release(&mut ended);
    batches.reconcile(streams);
    ended
}

fn step_rows(streams: &mut VecDeque<GenerationStream>, batches: &mut DecodeBatches, stats: &SharedBatchStats, mut ended: Vec<GenerationStream>) -> Vec<GenerationStream> {
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
    batches.admit(streams);
    // Plan: decoding rows first, then prompt chunks within the budget, in arrival order.
    let mut plan: Vec<Planned> = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        if s.steps_alone() {
            continue; // stepped above
        }
        if !s.is_prefilling() {
            let (tokens, logits) = s.next_input(0);
            plan.push(Planned { row: i, tokens, logits, lazy: s.lazy_input(), slot: batches.slot_of(s), group: s.inflight_row() });
        }
    }
    let mut budget = if plan.is_empty() && spec_rows == 0 { PREFILL_BUDGET_IDLE } else { PREFILL_BUDGET };
    for (i, s) in streams.iter().enumerate() {
        if s.is_prefilling() && budget > 0 && !s.steps_alone() {
            let (tokens, logits) = s.next_input(budget);
            budget -= tokens.len().min(budget);
            plan.push(Planned { row: i, tokens, logits, lazy: None, slot: None, group: None });
        }
    }
    let queued = streams.iter().filter(|s| s.is_prefilling()).count();
    {
        let mut st = stats.lock();
        st.record(plan.len() + spec_rows, queued);
        st.pipelined_rows += plan.iter().filter(|p| p.lazy.is_some()).count() as u64;
        st.stacked_rows += plan.iter().filter(|p| p.slot.is_some()).count() as u64;
    }

    let result = catch_unwind(AssertUnwindSafe(|| run_plan(streams, batches, &plan, &mut ended)));
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
    /// The row's slot in its model's stacked decode batch.
    slot: Option<usize>,
    /// The batch sample (group, row) its lazy input is an entry of.
    group: Option<(u64, usize)>,
}

/// The stacked rows' input ids in slot order, int32 [rows]: one constant when every id is on
/// the host, else spliced with the pipelined ids still on the device.
fn stacked_ids(plan: &[Planned], stacked: &[usize], last: Option<&(u64, Array)>) -> Result<Array, EngineError> {
    // Every row feeds back its own entry of the last batch sample, at the same position: that
    // array is the input as it is (the steady state of a stacked batch).
    if let Some((group, tokens)) = last {
        let same = tokens.shape() == [stacked.len() as i32] && stacked.iter().enumerate().all(|(i, &p)| plan[p].group == Some((*group, i)));
        if same {
            return Ok(tokens.as_dtype(mlx_rs::Dtype::Int32)?);
        }
    }
    if stacked.iter().all(|&p| plan[p].lazy.is_none()) {
        let ids: Vec<i32> = stacked.iter().map(|&p| plan[p].tokens[0] as i32).collect();
        return Ok(Array::from_slice(&ids, &[ids.len() as i32]));
    }
    let mut parts = Vec::with_capacity(stacked.len());
    for &p in stacked {
        parts.push(match &plan[p].lazy {
            Some(id) => id.as_dtype(mlx_rs::Dtype::Int32)?.reshape(&[1])?,
            None => Array::from_slice(&[plan[p].tokens[0] as i32], &[1]),
        });
    }
    Ok(mlx_rs::ops::concatenate(&parts, 0)?)
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

fn run_plan(streams: &mut VecDeque<GenerationStream>, batches: &mut DecodeBatches, plan: &[Planned], ended: &mut Vec<GenerationStream>) -> Result<(), EngineError> {
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
    let built = std::time::Instant::now();
    let mut sampled: Vec<(usize, DeviceSample)> = Vec::new();
    for group in &groups {
        let model = streams[plan[group[0]].row].model();
        // The stacked rows come first, in slot order (the batch's row order), then the others.
        let mut stacked: Vec<usize> = group.iter().copied().filter(|&p| plan[p].slot.is_some()).collect();
        stacked.sort_by_key(|&p| plan[p].slot);
        let rest: Vec<usize> = group.iter().copied().filter(|&p| plan[p].slot.is_none()).collect();
        let logits = {
            let mut batch = if stacked.is_empty() { None } else { batches.get_mut(&model) };
            if batch.as_ref().is_some_and(|b| b.rows() != stacked.len()) || (!stacked.is_empty() && batch.is_none()) {
                return Err(EngineError::generation("internal error: stacked decode rows out of step with their batch"));
            }
            let ids = match &batch {
                Some(b) => Some(stacked_ids(plan, &stacked, b.last_sample.as_ref())?),
                None => None,
            };
            let placeholder = vec![0u32; stacked.len()];
            let mut by_index: Vec<Option<&mut GenerationStream>> = streams.iter_mut().map(Some).collect();
            let mut segs: Vec<Segment<'_>> = Vec::with_capacity(rest.len() + 1);
            if let (Some(b), Some(ids)) = (batch.as_deref_mut(), ids.as_ref()) {
                b.begin_step()?;
                segs.push(Segment::stacked(&placeholder, ids, b));
            }
            for &p in &rest {
                let planned = &plan[p];
                let s = by_index[planned.row].take().expect("a stream is planned once");
                segs.push(Segment { tokens: &planned.tokens, lazy: planned.lazy.as_ref(), cache: s.cache_mut(), logits: planned.logits, batch: None });
            }
            let out = model.model.forward_segments(&mut segs);
            drop(segs);
            if let Some(b) = batch {
                if out.is_ok() { b.end_step() } else { b.abandon_step() }
            }
            out?
        };
        let mut row = 0;
        // Stacked rows that all decode greedily are sampled together: one argmax and one
        // log-softmax over [rows, vocab] instead of a handful of operations per row.
        if !stacked.is_empty() && stacked.iter().all(|&p| streams[plan[p].row].samples_plain_greedy()) {
            let rows = stacked.len() as i32;
            let (tokens, logprobs) = sampler::greedy_rows(&logits.try_index(..rows)?)?;
            let group = batches.next_group();
            for (i, &p) in stacked.iter().enumerate() {
                streams[plan[p].row].fed(&plan[p].tokens);
                sampled.push((plan[p].row, DeviceSample { token: tokens.clone(), logprob: logprobs.clone(), row: Some(i), group }));
            }
            if let Some(b) = batches.get_mut(&model) {
                b.last_sample = Some((group, tokens));
            }
            row = stacked.len() as i32;
        }
        let sampled_together = row > 0;
        for &p in stacked.iter().chain(rest.iter()) {
            let planned = &plan[p];
            if planned.slot.is_some() && sampled_together {
                continue;
            }
            streams[planned.row].fed(&planned.tokens);
            if planned.logits || planned.slot.is_some() {
                // Sample every row that produced logits; all rows are queued together below.
                let (tok, lp) = streams[planned.row].sample_lazy(&logits.try_index(row)?)?;
                sampled.push((planned.row, DeviceSample::single(tok, lp)));
                row += 1;
            }
        }
    }
    // Queue this step's work, then read the samples the previous step left on the device (fed
    // lazily above) while it runs: the host's detokenizing overlaps the device's compute.
    let arrays: Vec<&Array> = sampled.iter().flat_map(|(_, d)| [&d.token, &d.logprob]).collect();
    let evaluating = std::time::Instant::now();
    mlx_rs::transforms::async_eval(arrays)?;
    let queued = std::time::Instant::now();
    let mut done = Vec::new();
    for p in plan {
        if let Some(Step::Done) = streams[p.row].settle_fed() {
            done.push(p.row);
        }
    }
    let stacked = plan.iter().filter(|p| p.slot.is_some()).count();
    super::step_trace::record(stacked, plan.len() - stacked, [evaluating - built, queued - evaluating, queued.elapsed()]);
    for (i, sample) in sampled {
        // A row that ended on its previous sample drops this one (computed one step ahead).
        if done.contains(&i) {
            continue;
        }
        if let Step::Done = streams[i].take_sample(sample) {
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
