//! The engine thread: the one thread that owns MLX state (weights, KV caches, streams). It
//! serves commands and steps the active streams round-robin, one token each per turn, so
//! concurrent generators interleave fairly and a cancelled one is dropped within one step.
//! Every command and step runs under `catch_unwind`: a Rust panic becomes an error reply or an
//! error chunk, never a dead engine.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use super::commands::{BatchReply, Command, LoadReply, StartStream, TokenizeReply};
use crate::services::draft_compat::{compatibility_report, DraftFacts};
use serde_json::Value;
use crate::error::{EngineError, EngineResult, ErrorCode};
use super::decode_batch::DecodeBatches;
use super::exit_guard;
use super::scheduler::{self, SharedBatchStats};
use crate::generation::prefix_cache::PrefixCache;
use crate::generation::stream::speculative::default_draft_tokens;
use crate::generation::stream::GenerationStream;
use std::rc::Rc;
use crate::hub::ResolvedModel;
use crate::params::{LoadModelOptions, TokenizeRequest};
use crate::services::generation::prepare_stream;
use crate::services::model_lifecycle::{LoadOutcome, LoadedModel, ModelRegistry, ModelSnapshot};

/// After admitting a stream, how long the engine waits for another command before stepping.
/// Requests sent together (N users at once, `Promise.all` over N generators) reach the engine
/// microseconds apart; waiting this long lets them join ONE prefill pass, so their rows start
/// decoding together — equal lengths, one stacked batch without a mask — instead of joining
/// over several passes (measured on a GPU: the last of 16 such streams got its first token after
/// ~35 % of the run). A lone request pays this once, before its first pass.
const COMPANION_QUIET: Duration = Duration::from_micros(500);
/// The longest a burst of admissions may hold back the next step.
const COMPANION_WINDOW: Duration = Duration::from_millis(5);

/// The engine handle (every command sender) is gone.
struct Disconnected;

/// While streams run: a queued command, or — within a burst of admissions that began at
/// `burst` — one that arrives within `COMPANION_QUIET`; `None` when it is time to step.
fn poll_command<T>(rx: &Receiver<T>, burst: Option<Instant>) -> Result<Option<T>, Disconnected> {
    match rx.try_recv() {
        Ok(c) => Ok(Some(c)),
        Err(TryRecvError::Disconnected) => Err(Disconnected),
        Err(TryRecvError::Empty) => match burst {
            Some(began) if began.elapsed() < COMPANION_WINDOW => match rx.recv_timeout(COMPANION_QUIET) {
                Ok(c) => Ok(Some(c)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => Err(Disconnected),
            },
            _ => Ok(None),
        },
    }
}

pub struct Worker {
    rx: Receiver<Command>,
    registry: ModelRegistry,
    streams: VecDeque<GenerationStream>,
    /// The stacked caches of decode rows stepped together (see `decode_batch`).
    batches: DecodeBatches,
    batch_stats: SharedBatchStats,
    prefix_cache: PrefixCache,
}

impl Worker {
    pub fn new(rx: Receiver<Command>, snapshot: ModelSnapshot, batch_stats: SharedBatchStats, prefix_cache: PrefixCache) -> Self {
        Worker { rx, registry: ModelRegistry::new(snapshot), streams: VecDeque::new(), batches: DecodeBatches::default(), batch_stats, prefix_cache }
    }

    pub fn run(mut self) {
        // Held from leaving idle until going idle again (see exit_guard): process exit waits for it.
        let mut busy: Option<exit_guard::Busy> = None;
        // when the current burst of admissions began (None once a step has run)
        let mut burst: Option<Instant> = None;
        loop {
            if busy.is_some() && exit_guard::exiting() {
                exit_guard::settle();
                drop(busy.take());
                exit_guard::park_forever();
            }
            // Block only when there is nothing to compute.
            let cmd = if self.streams.is_empty() {
                if busy.is_some() {
                    exit_guard::settle(); // nothing may stay queued while idle
                    busy = None;
                }
                match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            } else {
                match poll_command(&self.rx, burst) {
                    Ok(c) => c,
                    Err(Disconnected) => break,
                }
            };
            busy.get_or_insert_with(exit_guard::enter_or_park);
            if let Some(cmd) = cmd {
                if let Command::Shutdown { reply } = cmd {
                    self.shutdown();
                    exit_guard::settle();
                    let _ = reply.send(());
                    return;
                }
                let admits = matches!(cmd, Command::Start { .. });
                self.handle(cmd);
                if admits {
                    burst.get_or_insert_with(Instant::now);
                }
                continue; // drain all pending commands before the next step
            }
            burst = None;
            self.step_all();
        }
        busy.get_or_insert_with(exit_guard::enter_or_park);
        self.shutdown();
        exit_guard::settle();
        drop(busy);
    }

    fn shutdown(&mut self) {
        super::step_trace::report();
        for mut s in self.streams.drain(..) {
            s.abort(EngineError::new(ErrorCode::Cancelled, "Engine shut down"));
        }
        self.batches.reconcile(&self.streams);
        self.registry.clear();
        self.prefix_cache.clear(None);
    }

    fn step_all(&mut self) {
        for s in scheduler::step(&mut self.streams, &mut self.batches, &self.batch_stats) {
            let (model, tokens, layers) = s.into_kv();
            self.prefix_cache.insert(&model, tokens, layers);
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Load { opts, source, reply } => {
                let r = guarded(|| self.load(opts, source), ErrorCode::ModelLoadError);
                let _ = reply.send(r);
            }
            Command::Unload { id, reply } => {
                let r = guarded(|| Ok(self.unload(&id)), ErrorCode::RuntimeError);
                let _ = reply.send(r);
            }
            Command::Tokenize { req, reply } => {
                let r = guarded(|| self.tokenize(req), ErrorCode::TokenizerError);
                let _ = reply.send(r);
            }
            Command::Start { start, reply } => {
                let r = guarded(|| self.start_stream(*start), ErrorCode::GenerationError);
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => unreachable!("handled by run()"),
            Command::LoadVision { opts, reply } => {
                let r = guarded(|| self.load_vision(opts), ErrorCode::ModelLoadError);
                let _ = reply.send(r);
            }
            Command::VisionProcessor { model, reply } => {
                let r = guarded(|| self.vision_model(&model).map(|v| v.processor()), ErrorCode::GenerationError);
                let _ = reply.send(r);
            }
            Command::CheckDraft(c) => {
                let _ = c.reply.send(Ok(self.check_drafts(c.pairs)));
            }
            Command::TokenizeBatch(t) => {
                let _ = t.reply.send(Ok(self.tokenize_batch(t.reqs)));
            }
        }
    }

    fn load(&mut self, opts: LoadModelOptions, source: Option<ResolvedModel>) -> EngineResult<LoadReply> {
        let outcome = self.registry.load(opts, source)?;
        self.loaded(outcome)
    }

    fn load_vision(&mut self, opts: LoadModelOptions) -> EngineResult<LoadReply> {
        let outcome = self.registry.load_vision(opts)?;
        self.loaded(outcome)
    }

    fn loaded(&mut self, outcome: LoadOutcome) -> EngineResult<LoadReply> {
        match outcome {
            LoadOutcome::Cached(handle) => Ok(LoadReply { handle, cached: true, evicted: vec![] }),
            LoadOutcome::Loaded { handle, evicted } => {
                // A (re)loaded model may have other weights than what the cache was built with.
                if let Some(id) = handle["descriptor"]["id"].as_str() {
                    self.prefix_cache.clear(Some(id));
                }
                for id in &evicted {
                    self.prefix_cache.clear(Some(id));
                    self.end_streams_of(id);
                }
                Ok(LoadReply { handle, cached: false, evicted })
            }
        }
    }

    fn unload(&mut self, id: &str) {
        self.end_streams_of(id);
        self.registry.unload(id);
        self.prefix_cache.clear(Some(id));
    }

    fn end_streams_of(&mut self, id: &str) {
        // A stream decoding speculatively with `id` as its draft ends too (with an error chunk
        // naming the draft), rather than silently continuing without it.
        let (gone, keep): (Vec<_>, Vec<_>) =
            self.streams.drain(..).partition(|s| s.model_id() == id || s.draft_id() == Some(id));
        self.streams = keep.into();
        self.batches.reconcile(&self.streams);
        for mut s in gone {
            let msg = if s.model_id() == id {
                format!("Model {id} was unloaded during generation")
            } else {
                format!("Draft model {id} was unloaded during generation")
            };
            s.abort(EngineError::generation(msg));
        }
    }

    fn tokenize(&mut self, req: TokenizeRequest) -> EngineResult<TokenizeReply> {
        let model = self.registry.get(&req.model).ok_or_else(|| {
            EngineError::model_not_loaded(format!("Model {} must be loaded before tokenization", req.model))
        })?;
        let tokens = model.tokenizer.encode(&req.text, req.add_bos)?;
        let token_strings = tokens.iter().map(|&t| model.tokenizer.id_to_token(t).unwrap_or_default()).collect();
        Ok(TokenizeReply { tokens, token_strings })
    }

    fn start_stream(&mut self, s: StartStream) -> EngineResult<()> {
        let model = self
            .registry
            .get(&s.params.model)
            .ok_or_else(|| EngineError::model_not_loaded(format!("Model not loaded: {}", s.params.model)))?;
        let draft = match &s.params.draft_model {
            Some(id) => Some(self.draft_for(&model, id)?),
            None => None,
        };
        let k = s.params.num_draft_tokens.map_or_else(default_draft_tokens, |k| k as usize);
        if self.streams.iter().any(|x| x.id() == s.id) {
            return Err(EngineError::invalid_params(format!("Stream id {} is already active", s.id)).with_detail("field", "streamId"));
        }
        let mut params = s.params;
        let vision = match s.vision {
            Some(v) => {
                let (tokens, vis) = crate::vision::stream_prompt(&model, &v.prompt, &v.images)?;
                params.prompt = crate::params::Prompt::Tokens(tokens);
                Some((vis, v.images))
            }
            None => None,
        };
        let req = prepare_stream(params, &model, s.id, s.timeout_ms)?;
        let mut stream = GenerationStream::new(req, model, s.tx, s.cancel)?;
        if let Some(draft) = draft {
            stream.enable_speculation(draft, k);
        }
        if let Some((vis, images)) = vision {
            stream.enable_vision(vis, images);
        } else if let Some((n, cache)) = self.prefix_cache.lookup(stream.model_id(), stream.prompt()) {
            stream.resume_from(n, cache);
        }
        self.streams.push_back(stream);
        Ok(())
    }
}

impl Worker {
    /// A loaded vision model (ModelNotLoaded when unknown or text-only: spec §7.12).
    fn vision_model(&mut self, id: &str) -> EngineResult<Rc<crate::vision::VisionModel>> {
        let m = self.registry.get(id).ok_or_else(|| EngineError::model_not_loaded(format!("Model not loaded: {id}")))?;
        m.vision.clone().ok_or_else(|| EngineError::model_not_loaded(format!("Model {id} is not a vision model; load it with loadVisionModel")))
    }

    /// The draft of a speculative request: loaded (else ModelNotLoaded) and compatible with the
    /// target by the §7.8 check (else InvalidParams with the check's first error), and with
    /// logits of the same width.
    fn draft_for(&mut self, target: &Rc<LoadedModel>, id: &str) -> EngineResult<Rc<LoadedModel>> {
        let draft = self.registry.get(id).ok_or_else(|| EngineError::model_not_loaded(format!("Model not loaded: {id}")))?;
        let report = compatibility_report(&DraftFacts::of(target), &DraftFacts::of(&draft));
        let incompatible = |msg: String| EngineError::invalid_params(msg).with_detail("field", "draftModel");
        if report["compatible"] != true {
            let first = report["errors"][0].as_str().unwrap_or("incompatible draft model").to_string();
            return Err(incompatible(format!("Draft model {id} is not compatible with {}: {first}", target.id)));
        }
        let (tv, dv) = (target.model.config().vocab_size, draft.model.config().vocab_size);
        if tv != dv {
            return Err(incompatible(format!(
                "Draft model {id} is not compatible with {}: output vocabulary size mismatch: primary={tv}, draft={dv}",
                target.id
            )));
        }
        Ok(draft)
    }
}

fn guarded<T>(f: impl FnOnce() -> EngineResult<T>, code: ErrorCode) -> EngineResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(EngineError::new(code, format!("internal error: {}", panic_message(&panic)))),
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// Batched requests (spec §7.8 draft compatibility, `batch_tokenize` / `batch_check_draft`):
/// each entry runs under its own panic guard, so one failure never affects the others.
impl Worker {
    fn check_drafts(&mut self, pairs: Vec<(String, String)>) -> BatchReply<Value> {
        pairs.into_iter().map(|(p, d)| guarded(|| self.check_draft(&p, &d), ErrorCode::RuntimeError)).collect()
    }

    fn check_draft(&mut self, primary: &str, draft: &str) -> EngineResult<Value> {
        let loaded = |id: &str| self.registry.get(id).ok_or_else(|| EngineError::model_not_loaded(format!("Model not loaded: {id}")));
        let (p, d) = (loaded(primary)?, loaded(draft)?);
        let report = compatibility_report(&DraftFacts::of(&p), &DraftFacts::of(&d));
        if report["compatible"] == true {
            self.registry.draft_pairs.pair(primary, draft);
        }
        Ok(report)
    }

    fn tokenize_batch(&mut self, reqs: Vec<EngineResult<TokenizeRequest>>) -> BatchReply<TokenizeReply> {
        reqs.into_iter().map(|r| r.and_then(|req| guarded(|| self.tokenize(req), ErrorCode::TokenizerError))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// Outside a burst an empty queue means "step now"; inside one the engine first waits (at
    /// least the quiet period) for a companion; queued commands always come first.
    #[test]
    fn a_burst_of_admissions_waits_for_companions() {
        let (tx, rx) = channel::<u32>();
        assert!(matches!(poll_command(&rx, None), Ok(None)));
        let long_ago = Instant::now().checked_sub(COMPANION_WINDOW * 2);
        if let Some(t) = long_ago {
            assert!(matches!(poll_command(&rx, Some(t)), Ok(None)), "a burst past its window does not wait");
        }
        let waited = Instant::now();
        assert!(matches!(poll_command(&rx, Some(Instant::now())), Ok(None)));
        assert!(waited.elapsed() >= COMPANION_QUIET, "stepped without waiting for companions");
        tx.send(7).unwrap();
        assert!(matches!(poll_command(&rx, None), Ok(Some(7))), "a queued command comes before the step");
        drop(tx);
        assert!(matches!(poll_command(&rx, Some(Instant::now())), Err(Disconnected)));
    }
}
