//! One generation request as a state machine stepped by the engine thread: prefill the prompt,
//! then one decode step per call, turning sampled ids into text chunks (UTF-8-safe streaming
//! detokenization, stop-sequence hold-back) until EOS, a stop condition, maxTokens, a deadline
//! or cancellation. Each step checks cancellation first, so a cancelled stream stops computing
//! within one decode step and its KV cache is freed when the stream is dropped.

use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mlx_rs::Array;
use tokio::sync::mpsc::UnboundedSender;

use super::chunk::{Chunk, FinishReason, GenerationStats};
use super::constraint::JsonConstraint;
use super::kv_cache::KvCache;
use super::mask_worker::MaskPipeline;
use super::sampler::{Sampler, SamplingParams};
use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::services::model_lifecycle::LoadedModel;
use crate::text::{StopMatcher, StreamingDetokenizer};

/// Values of the shared cancel flag.
pub const CANCEL_NONE: u8 = 0;
/// The consumer stopped iterating (`return()`/`break`): end silently.
pub const CANCEL_RETURN: u8 = 1;
/// AbortSignal or engine shutdown: end with one `Cancelled` error chunk.
pub const CANCEL_ABORT: u8 = 2;

pub struct StreamRequest {
    pub id: String,
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: u32,
    pub stop_sequences: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub deadline: Option<Instant>,
    /// Structured output: the compiled grammar (spec §7.7).
    pub constraint: Option<JsonConstraint>,
}

pub struct GenerationStream {
    req: StreamRequest,
    model: Rc<LoadedModel>,
    cache: Vec<KvCache>,
    sampler: Sampler,
    /// Structured output: the grammar, stepped on its own thread.
    guide: Option<MaskPipeline>,
    detok: StreamingDetokenizer,
    stops: StopMatcher,
    tx: UnboundedSender<Chunk>,
    cancel: Arc<AtomicU8>,
    started: Instant,
    first_token_at: Option<Instant>,
    generated: u32,
    last_token: Option<u32>,
    /// The newest token chunk, kept back while part of its text is still held (an incomplete
    /// UTF-8 character or a possible stop-string prefix), so that text flushed at the end can
    /// be appended to it and every emitted text belongs to a counted token chunk.
    pending: Option<Chunk>,
}

pub enum Step {
    Continue,
    Done,
}

impl GenerationStream {
    pub fn new(mut req: StreamRequest, model: Rc<LoadedModel>, tx: UnboundedSender<Chunk>, cancel: Arc<AtomicU8>) -> EngineResult<Self> {
        let sampler = Sampler::new(req.sampling.clone(), &req.prompt)?;
        let detok = StreamingDetokenizer::new(&model.tokenizer);
        let stops = StopMatcher::new(req.stop_sequences.clone());
        let guide = req.constraint.take().map(MaskPipeline::spawn).transpose()?;
        Ok(GenerationStream {
            cache: model.model.new_cache(),
            sampler,
            guide,
            detok,
            stops,
            model,
            tx,
            cancel,
            started: Instant::now(),
            first_token_at: None,
            generated: 0,
            last_token: None,
            pending: None,
            req,
        })
    }

    pub fn id(&self) -> &str {
        &self.req.id
    }

    pub fn model_id(&self) -> &str {
        &self.model.id
    }

    /// Ends the stream from outside (engine shutdown, model unload).
    pub fn abort(&mut self, err: EngineError) {
        self.finish_with_error(err);
    }

    /// Runs one unit of work: the prefill on the first call, then one decode step.
    pub fn step(&mut self) -> Step {
        match self.cancel.load(Ordering::Acquire) {
            CANCEL_RETURN => return Step::Done,
            CANCEL_ABORT => {
                self.finish_with_error(EngineError::new(ErrorCode::Cancelled, "Stream aborted"));
                return Step::Done;
            }
            _ => {}
        }
        if self.tx.is_closed() {
            return Step::Done;
        }
        if self.req.deadline.is_some_and(|d| Instant::now() >= d) {
            let msg = format!("Stream {} timed out", self.req.id);
            self.finish_with_error(EngineError::new(ErrorCode::Timeout, msg));
            return Step::Done;
        }
        match self.advance() {
            Ok(Some(reason)) => {
                self.finish(reason);
                Step::Done
            }
            Ok(None) => Step::Continue,
            Err(e) => {
                self.finish_with_error(e);
                Step::Done
            }
        }
    }

    fn advance(&mut self) -> EngineResult<Option<FinishReason>> {
        if self.req.max_tokens == 0 {
            return Ok(Some(FinishReason::Length));
        }
        if self.guide.as_ref().is_some_and(MaskPipeline::is_finished) {
            return Ok(Some(FinishReason::Stop));
        }
        let input: Vec<i32> = match self.last_token {
            None => self.req.prompt.iter().map(|&t| t as i32).collect(),
            Some(t) => vec![t as i32],
        };
        let ids = Array::from_slice(&input, &[1, input.len() as i32]);
        let logits = self.model.model.forward(&ids, &mut self.cache, true)?;
        let vocab = logits.shape()[2];
        let logits = logits.reshape(&[vocab])?;
        let allowed = match self.guide.as_mut() {
            Some(guide) => match guided_mask(guide, &logits, vocab)? {
                Some(mask) => Some(mask),
                None => return Ok(Some(FinishReason::Stop)), // complete: only EOS may follow
            },
            None => None,
        };
        let sampled = self.sampler.sample(&logits, allowed.as_ref())?;
        self.last_token = Some(sampled.token);
        if self.model.tokenizer.eos_ids().contains(&sampled.token) || self.guide.as_ref().is_some_and(|g| g.is_eos(sampled.token)) {
            return Ok(Some(FinishReason::Eos));
        }
        if self.req.stop_token_ids.contains(&sampled.token) {
            return Ok(Some(FinishReason::Stop));
        }
        if let Some(guide) = self.guide.as_mut() {
            guide.commit(sampled.token)?;
        }
        self.generated += 1;
        self.first_token_at.get_or_insert_with(Instant::now);
        let delta = self.detok.push(&self.model.tokenizer, sampled.token)?;
        let outcome = self.stops.push(&delta);
        let chunk = Chunk::Token { token: outcome.emit, token_id: sampled.token, logprob: finite(sampled.logprob), is_final: false };
        if let Some(prev) = self.pending.take() {
            self.send(prev);
        }
        if outcome.stopped {
            self.pending = Some(chunk);
            return Ok(Some(FinishReason::Stop));
        }
        if self.generated >= self.req.max_tokens {
            self.pending = Some(chunk);
            return Ok(Some(FinishReason::Length));
        }
        if self.detok.is_holding() || self.stops.is_holding() {
            self.pending = Some(chunk);
        } else {
            self.send(chunk);
        }
        Ok(None)
    }

    fn finish(&mut self, reason: FinishReason) {
        // Release held-back text (not after a stop string: what follows it is never yielded).
        let tail = if reason == FinishReason::Stop && self.stops.stopped() {
            String::new()
        } else {
            let rest = self.detok.finish(&self.model.tokenizer).unwrap_or_default();
            let mut t = self.stops.push(&rest).emit;
            if !self.stops.stopped() {
                t.push_str(&self.stops.flush());
            }
            t
        };
        if let Some(Chunk::Token { token, token_id, logprob, .. }) = self.pending.take() {
            self.send(Chunk::Token { token: token + &tail, token_id, logprob, is_final: true });
        }
        let total = self.started.elapsed().as_secs_f64();
        let ttft = self.first_token_at.map(|t| (t - self.started).as_secs_f64()).unwrap_or(total);
        let decode_time = total - ttft;
        let tps = if self.generated == 0 {
            0.0
        } else if decode_time > 0.0 {
            self.generated as f64 / decode_time
        } else {
            self.generated as f64 / total.max(1e-9)
        };
        self.send(Chunk::Metadata(GenerationStats {
            tokens_generated: self.generated,
            tokens_per_second: tps,
            time_to_first_token: ttft,
            total_time: total.max(ttft),
            model_id: self.model.id.clone(),
            finish_reason: reason,
        }));
    }

    fn finish_with_error(&mut self, err: EngineError) {
        if let Some(p) = self.pending.take() {
            self.send(p);
        }
        self.send(Chunk::Error(err));
    }

    fn send(&self, chunk: Chunk) {
        // A closed receiver means the consumer is gone; the next step notices and stops.
        let _ = self.tx.send(chunk);
    }
}

/// The bool [vocab] mask of the current position, or None when the grammar is complete and
/// only EOS may follow. The logits are evaluated first so that the device computes them while
/// the mask thread finishes the mask.
fn guided_mask(guide: &mut MaskPipeline, logits: &Array, vocab: i32) -> EngineResult<Option<Array>> {
    logits.eval()?;
    let mask = guide.take_mask()?;
    if mask.only_eos {
        return Ok(None);
    }
    let mut allowed = mask.allowed;
    allowed.resize(vocab as usize, false);
    Ok(Some(Array::from_slice(&allowed, &[vocab])))
}

fn finite(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}
