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

#[path = "speculative.rs"]
pub mod speculative;
#[path = "vision_step.rs"]
pub mod vision_step;

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
    pub ignore_eos: bool,
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
    /// The grammar is complete: the next sample is discarded and the stream ends ('stop').
    grammar_done: bool,
    detok: StreamingDetokenizer,
    stops: StopMatcher,
    tx: UnboundedSender<Chunk>,
    cancel: Arc<AtomicU8>,
    started: Instant,
    first_token_at: Option<Instant>,
    generated: u32,
    last_token: Option<u32>,
    /// Prompt tokens already fed through the model (chunked prefill).
    prompt_fed: usize,
    /// The tokens whose keys/values are in `cache`, in order (for prompt-prefix reuse).
    kv_tokens: Vec<u32>,
    /// The newest token chunk, kept back while part of its text is still held (an incomplete
    /// UTF-8 character or a possible stop-string prefix), so that text flushed at the end can
    /// be appended to it and every emitted text belongs to a counted token chunk.
    pending: Option<Chunk>,
    /// Speculative decoding state when the request named a `draftModel` (see `speculative`).
    spec: Option<speculative::Speculation>,
    /// Pipelined decode: the last sample (token, logprob) still on the device, not yet read by
    /// the host. The next step feeds it to the model lazily and reads it only after queueing
    /// that step's work, so the device never idles while the host detokenizes and builds graphs.
    inflight: Option<DeviceSample>,
    /// The inflight sample after it was fed in this step, awaiting [`Self::settle_fed`].
    fed_inflight: Option<DeviceSample>,
    /// Image inputs and M-RoPE state when the request carried images (see `vision_step`).
    vision: Option<vision_step::VisionState>,
}

pub enum Step {
    Continue,
    Done,
}

/// A sampled id and its log-probability, still on the device: the row's own scalars, or row
/// `row` of arrays [rows] that a batch of greedy rows was sampled into at once (`group` names
/// that batch sample, so the next step can feed the whole array back unchanged).
#[derive(Clone)]
pub struct DeviceSample {
    pub token: Array,
    pub logprob: Array,
    pub row: Option<usize>,
    pub group: u64,
}

impl DeviceSample {
    pub fn single(token: Array, logprob: Array) -> Self {
        DeviceSample { token, logprob, row: None, group: 0 }
    }

    /// Waits for the sample and reads it.
    fn read(&self) -> (u32, f32) {
        match self.row {
            None => (self.token.item_cast::<u32>(), self.logprob.item_cast::<f32>()),
            Some(i) => (self.token.as_slice::<u32>()[i], self.logprob.as_slice::<f32>()[i]),
        }
    }

    /// The id as an array [1] (lazy).
    pub(crate) fn id(&self) -> Array {
        match self.row {
            None => self.token.clone(),
            Some(i) => {
                use mlx_rs::ops::indexing::TryIndexOp;
                let i = i as i32;
                self.token.try_index(i..i + 1).expect("a batch sample row is in range")
            }
        }
    }
}

impl GenerationStream {
    pub fn new(mut req: StreamRequest, model: Rc<LoadedModel>, tx: UnboundedSender<Chunk>, cancel: Arc<AtomicU8>) -> EngineResult<Self> {
        let guide = req.constraint.take().map(MaskPipeline::spawn).transpose()?;
        let sampler = Sampler::new(req.sampling.clone(), &req.prompt)?;
        let detok = StreamingDetokenizer::new(&model.tokenizer);
        let stops = StopMatcher::new(req.stop_sequences.clone());
        Ok(GenerationStream {
            cache: model.model.new_cache(),
            sampler,
            guide,
            grammar_done: false,
            detok,
            stops,
            model,
            tx,
            cancel,
            started: Instant::now(),
            first_token_at: None,
            generated: 0,
            last_token: None,
            prompt_fed: 0,
            kv_tokens: Vec::new(),
            pending: None,
            spec: None,
            inflight: None,
            fed_inflight: None,
            vision: None,
            req,
        })
    }

    pub fn id(&self) -> &str {
        &self.req.id
    }

    pub fn model(&self) -> Rc<LoadedModel> {
        self.model.clone()
    }

    pub fn model_id(&self) -> &str {
        &self.model.id
    }

    /// Ends the stream from outside (engine shutdown, model unload).
    pub fn abort(&mut self, err: EngineError) {
        self.finish_with_error(err);
    }

    /// Checks cancellation, the consumer and the deadline; ends the stream when one says so.
    /// Returns true when the stream is over and should be dropped (freeing its KV cache).
    pub fn poll_control(&mut self) -> bool {
        match self.cancel.load(Ordering::Acquire) {
            CANCEL_RETURN => return true,
            CANCEL_ABORT => {
                self.finish_with_error(EngineError::new(ErrorCode::Cancelled, "Stream aborted"));
                return true;
            }
            _ => {}
        }
        if self.tx.is_closed() {
            return true;
        }
        if self.req.deadline.is_some_and(|d| Instant::now() >= d) {
            let msg = format!("Stream {} timed out", self.req.id);
            self.finish_with_error(EngineError::new(ErrorCode::Timeout, msg));
            return true;
        }
        if self.req.max_tokens == 0 {
            self.finish(FinishReason::Length);
            return true;
        }
        if self.guide.as_ref().is_some_and(MaskPipeline::is_finished) {
            self.finish(FinishReason::Stop);
            return true;
        }
        false
    }

    /// True until the whole prompt has been fed through the model.
    pub fn is_prefilling(&self) -> bool {
        self.prompt_fed < self.req.prompt.len()
    }

    /// Prompt tokens not yet fed (0 once decoding).
    pub fn prompt_remaining(&self) -> usize {
        self.req.prompt.len() - self.prompt_fed
    }

    /// The tokens to feed in the next forward pass: the next prompt chunk (at most `budget`
    /// tokens) while prefilling, else the last sampled token; and whether that pass must
    /// produce logits (only when it reaches the end of the prompt, or when decoding).
    /// While a sample is inflight (pipelined decode) the token is a placeholder: feed
    /// [`Self::lazy_input`] instead.
    pub fn next_input(&self, budget: usize) -> (Vec<u32>, bool) {
        if self.is_prefilling() {
            let end = (self.prompt_fed + budget.max(1)).min(self.req.prompt.len());
            (self.req.prompt[self.prompt_fed..end].to_vec(), end == self.req.prompt.len())
        } else if self.inflight.is_some() {
            (vec![0], true)
        } else {
            (vec![self.last_token.expect("decoding without a sampled token")], true)
        }
    }

    /// The inflight sample's id on the device, when the next input is one (pipelined decode).
    pub fn lazy_input(&self) -> Option<Array> {
        self.inflight.as_ref().map(DeviceSample::id)
    }

    /// The batch sample (group, row) the inflight id belongs to, when it was sampled with others.
    pub fn inflight_row(&self) -> Option<(u64, usize)> {
        self.inflight.as_ref().and_then(|s| s.row.map(|r| (s.group, r)))
    }

    /// Whether this row's next sample is plain greedy argmax (temperature 0, no penalties, no
    /// grammar), so it can be sampled together with other such rows.
    pub fn samples_plain_greedy(&self) -> bool {
        self.guide.is_none() && !self.grammar_done && self.sampler.params().temperature <= 0.0 && !self.sampler.has_penalties()
    }

    /// Marks the input from [`Self::next_input`] as fed (now held by the KV cache). A lazily fed
    /// id is recorded when [`Self::settle_fed`] reads it.
    pub fn fed(&mut self, tokens: &[u32]) {
        if self.is_prefilling() {
            self.prompt_fed += tokens.len();
        }
        match self.inflight.take() {
            Some(sample) => self.fed_inflight = Some(sample),
            None => self.kv_tokens.extend_from_slice(tokens),
        }
    }

    /// Reads and emits the sample that this step fed lazily (call after queueing the step's own
    /// work, so the wait overlaps with it). `None` when nothing was fed lazily.
    pub fn settle_fed(&mut self) -> Option<Step> {
        let sample = self.fed_inflight.take()?;
        let (id, lp) = sample.read();
        if self.vision.is_none() {
            // (a vision row's KV state is never offered for prefix reuse: kv_tokens stays empty)
            self.kv_tokens.push(id);
        }
        Some(self.accept(id, lp))
    }

    /// Takes this step's (queued) sample: keeps it on the device for the next step to feed when
    /// the row can pipeline, else reads and emits it now. A row pipelines when the sample does
    /// not steer the next step's graph on the host: no grammar (its mask needs the id), no
    /// penalties (their history needs it), no speculation, and not the last token by maxTokens
    /// (so a fed sample is never wasted for length). An EOS or stop sample costs one extra step.
    pub fn take_sample(&mut self, sample: DeviceSample) -> Step {
        let pipelines = self.guide.is_none()
            && self.spec.is_none()
            && !self.grammar_done
            && !self.sampler.has_penalties()
            && self.generated + 1 < self.req.max_tokens;
        if pipelines {
            self.inflight = Some(sample);
            Step::Continue
        } else {
            let (id, lp) = sample.read();
            self.accept(id, lp)
        }
    }

    /// Starts from a reused KV prefix holding the first `n` prompt tokens.
    pub fn resume_from(&mut self, n: usize, cache: Vec<KvCache>) {
        debug_assert!(n < self.req.prompt.len());
        self.cache = cache;
        self.prompt_fed = n;
        self.kv_tokens = self.req.prompt[..n].to_vec();
    }

    pub fn prompt(&self) -> &[u32] {
        &self.req.prompt
    }

    /// The KV state this stream leaves behind: (model id, the tokens it encodes, the cache).
    pub fn into_kv(self) -> (String, Vec<u32>, Vec<KvCache>) {
        (self.model.id.clone(), self.kv_tokens, self.cache)
    }

    /// Moves the KV cache out (into a stacked decode batch); the stream holds none until
    /// [`Self::restore_cache`].
    pub fn take_cache(&mut self) -> Vec<KvCache> {
        std::mem::take(&mut self.cache)
    }

    pub fn restore_cache(&mut self, cache: Vec<KvCache>) {
        self.cache = cache;
    }

    /// A plain decode row: prompt fed and stepped in the batched pass (not alone).
    pub fn is_plain_decode(&self) -> bool {
        !self.is_prefilling() && !self.steps_alone()
    }

    pub fn cache_mut(&mut self) -> &mut [KvCache] {
        &mut self.cache
    }

    /// Builds the sampling graph for this row's logits [vocab] (evaluated by the caller together
    /// with the other rows of the batch).
    pub fn sample_lazy(&mut self, logits: &Array) -> EngineResult<(Array, Array)> {
        let allowed = match self.guide.as_mut() {
            Some(guide) => {
                let mask = guide.take_mask()?;
                if mask.only_eos {
                    // Complete document: only EOS may follow; end without sampling further.
                    self.grammar_done = true;
                    None
                } else {
                    let vocab = *logits.shape().last().unwrap_or(&0);
                    let mut allowed = mask.allowed;
                    allowed.resize(vocab as usize, false);
                    Some(Array::from_slice(&allowed, &[vocab]))
                }
            }
            None => None,
        };
        Ok(self.sampler.sample_lazy(logits, allowed.as_ref())?)
    }

    /// Takes the evaluated sample: emits text, checks stop conditions. Returns `Done` when the
    /// stream has sent its terminal chunk.
    pub fn accept(&mut self, token: u32, logprob: f32) -> Step {
        if self.grammar_done {
            self.finish(FinishReason::Stop);
            return Step::Done;
        }
        self.sampler.commit(token);
        match self.on_token(token, logprob) {
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

    /// Ends the stream with an error chunk (a failed forward pass, an internal error).
    pub fn fail(&mut self, err: EngineError) {
        self.finish_with_error(err);
    }

    fn on_token(&mut self, token: u32, logprob: f32) -> EngineResult<Option<FinishReason>> {
        self.last_token = Some(token);
        let guide_eos = self.guide.as_ref().is_some_and(|g| g.is_eos(token));
        if guide_eos || (!self.req.ignore_eos && self.model.tokenizer.eos_ids().contains(&token)) {
            return Ok(Some(FinishReason::Eos));
        }
        if self.req.stop_token_ids.contains(&token) {
            return Ok(Some(FinishReason::Stop));
        }
        if let Some(guide) = self.guide.as_mut() {
            guide.commit(token)?;
        }
        self.generated += 1;
        self.first_token_at.get_or_insert_with(Instant::now);
        let delta = self.detok.push(&self.model.tokenizer, token)?;
        let outcome = self.stops.push(&delta);
        let chunk = Chunk::Token { token: outcome.emit, token_id: token, logprob: finite(logprob), is_final: false };
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
        let spec = self.spec_counts();
        self.send(Chunk::Metadata(GenerationStats {
            tokens_generated: self.generated,
            tokens_per_second: tps,
            time_to_first_token: ttft,
            total_time: total.max(ttft),
            model_id: self.model.id.clone(),
            finish_reason: reason,
            draft_tokens_accepted: spec.map(|c| c.0),
            draft_tokens_proposed: spec.map(|c| c.1),
            acceptance_rate: spec.map(|(a, p)| if p == 0 { 0.0 } else { a as f64 / p as f64 }),
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

fn finite(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}
