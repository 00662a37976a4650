//! RuntimeLifecycleService and the engine's public face for the napi layer: starts and stops the
//! engine thread, forwards requests to it over a channel, and hands back generation streams.
//! Validation happens here, on the caller's thread, before any request reaches the engine.

pub mod commands;
mod decode_batch;
pub mod exit_guard;
pub mod scheduler;
pub(crate) mod step_trace;
mod vision;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc as tmpsc, oneshot};

use commands::{BatchReply, CheckDraft, Command, LoadReply, StartStream, TokenizeBatch, TokenizeReply};
use crate::services::draft_compat::model_id_arg;
use crate::error::{EngineError, EngineResult};
use crate::generation::stream::{CANCEL_ABORT, CANCEL_RETURN};
use crate::generation::prefix_cache::{PrefixCache, SharedPromptCacheStats, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES};
use crate::generation::Chunk;
use crate::hub::{HubOptions, LoadProgress, ProgressFn};
use crate::services::model_source::resolve_source;
use crate::params::{normalize_generator_params, normalize_load_options, normalize_stream_options, normalize_tokenize_request, StreamOptions};
use crate::services::model_lifecycle::{ModelSnapshot, MAX_LOADED_MODELS};

struct Running {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

pub struct Engine {
    running: Mutex<Option<Running>>,
    snapshot: ModelSnapshot,
    active: Arc<AtomicUsize>,
    next_stream: AtomicUsize,
    batch_stats: scheduler::SharedBatchStats,
    config: EngineConfig,
    prompt_cache_stats: SharedPromptCacheStats,
    /// Bumped by every shutdown: a hub download begun before it stops, and its load is dropped.
    shutdowns: Arc<AtomicU64>,
}

/// Engine-wide settings (from `EngineOptions`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Prompt-prefix KV reuse bounds (0 entries disables it).
    pub prompt_cache_max_entries: usize,
    pub prompt_cache_max_bytes: usize,
    /// `hub`: endpoint / cache folder / token / offline overrides of the HF environment variables.
    pub hub: HubOptions,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { prompt_cache_max_entries: DEFAULT_MAX_ENTRIES, prompt_cache_max_bytes: DEFAULT_MAX_BYTES, hub: HubOptions::default() }
    }
}

impl EngineConfig {
    /// `{promptCache: {enabled?, maxEntries?, maxBytes?}, hub: {endpoint?, cacheDir?, token?,
    /// offline?}}`; invalid values → InvalidParams.
    pub fn from_options(raw: &Value) -> EngineResult<Self> {
        let mut c = EngineConfig { hub: HubOptions::from_json(raw)?, ..EngineConfig::default() };
        let Some(pc) = raw.get("promptCache").filter(|v| !v.is_null()) else { return Ok(c) };
        let field = |k: &str| pc.get(k).filter(|v| !v.is_null());
        let count = |k: &str| -> EngineResult<Option<usize>> {
            match field(k) {
                None => Ok(None),
                Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                    EngineError::invalid_params(format!("Validation error on field 'promptCache.{k}': must be a non-negative integer"))
                        .with_detail("field", format!("promptCache.{k}"))
                }),
            }
        };
        if let Some(n) = count("maxEntries")? {
            c.prompt_cache_max_entries = n;
        }
        if let Some(n) = count("maxBytes")? {
            c.prompt_cache_max_bytes = n;
        }
        if field("enabled").and_then(Value::as_bool) == Some(false) {
            c.prompt_cache_max_entries = 0;
        }
        Ok(c)
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Self {
        Engine {
            running: Mutex::new(None),
            snapshot: ModelSnapshot::default(),
            active: Arc::new(AtomicUsize::new(0)),
            next_stream: AtomicUsize::new(1),
            batch_stats: Default::default(),
            config,
            prompt_cache_stats: Default::default(),
            shutdowns: Default::default(),
        }
    }

    /// Starts the engine thread if it is not running (idempotent).
    pub fn start(&self) -> EngineResult<()> {
        self.start_locked(&mut self.running.lock()).map(|_| ())
    }

    /// Starts the thread into `guard` unless it runs; returns its command channel.
    fn start_locked(&self, guard: &mut Option<Running>) -> EngineResult<mpsc::Sender<Command>> {
        if let Some(r) = guard.as_ref() {
            return Ok(r.tx.clone());
        }
        crate::services::blas::install_exit_guard();
        // registered after the BLAS guard, so it runs first at exit (atexit runs in reverse)
        exit_guard::install();
        crate::services::mlx_env::apply_defaults();
        let (tx, rx) = mpsc::channel();
        let snapshot = self.snapshot.clone();
        let batch_stats = self.batch_stats.clone();
        let prefix_cache = PrefixCache::new(self.config.prompt_cache_max_entries, self.config.prompt_cache_max_bytes, self.prompt_cache_stats.clone());
        let thread = std::thread::Builder::new()
            .name("mlx-serving-engine".into())
            .spawn(move || worker::Worker::new(rx, snapshot, batch_stats, prefix_cache).run())
            .map_err(|e| EngineError::runtime(format!("cannot start the engine thread: {e}")))?;
        *guard = Some(Running { tx: tx.clone(), thread: Some(thread), started: Instant::now() });
        Ok(tx)
    }

    /// Cancels every stream, drops every model and stops the thread. Idempotent.
    pub async fn shutdown(&self) {
        // Also when not running: a hub download of a load in flight stops either way.
        // Bumped under the same lock a load checks it under (see `request_in_epoch`).
        let running = {
            let mut guard = self.running.lock();
            self.shutdowns.fetch_add(1, Ordering::AcqRel);
            guard.take()
        };
        let Some(mut running) = running else { return };
        let (reply, done) = oneshot::channel();
        if running.tx.send(Command::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
        if let Some(t) = running.thread.take() {
            let _ = t.join();
        }
        self.snapshot.clear();
    }

    pub fn is_running(&self) -> bool {
        self.running.lock().is_some()
    }

    pub fn uptime_ms(&self) -> f64 {
        self.running.lock().as_ref().map_or(0.0, |r| r.started.elapsed().as_secs_f64() * 1000.0)
    }

    pub fn active_streams(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn list_models(&self) -> Vec<Value> {
        self.snapshot.list()
    }

    pub fn get_model_info(&self, id: &str) -> Option<Value> {
        self.snapshot.get(id)
    }

    pub fn touch_model(&self, id: &str) -> bool {
        self.snapshot.touch(id)
    }

    /// `getBatchStats().generation` (spec §15): continuous-batching figures since the last reset.
    pub fn batch_stats(&self) -> Value {
        serde_json::to_value(self.batch_stats.lock().clone()).unwrap_or(Value::Null)
    }

    /// Decode rows fed lazily since the last reset (pipelined decode, engine/scheduler.rs).
    pub fn pipelined_rows(&self) -> u64 {
        self.batch_stats.lock().pipelined_rows
    }

    /// Decode rows stepped stacked (one shared KV buffer per layer) since the last reset.
    pub fn stacked_rows(&self) -> u64 {
        self.batch_stats.lock().stacked_rows
    }

    pub fn reset_batch_stats(&self) {
        scheduler::reset(&self.batch_stats);
    }

    /// Spec §8.6 `getCacheStats()`.
    pub fn cache_stats(&self) -> Value {
        let mut entries = self.snapshot.entries();
        entries.sort_by(|a, b| b.last_access_ms.cmp(&a.last_access_ms));
        let models: Vec<Value> = entries.iter().map(|e| json!({"modelId": e.id, "lastAccess": e.last_access_ms})).collect();
        let prompt_cache = serde_json::to_value(self.prompt_cache_stats.lock().clone()).unwrap_or(Value::Null);
        json!({"loadedModels": models.len(), "maxModels": MAX_LOADED_MODELS, "cacheEnabled": true, "models": models, "promptCache": prompt_cache})
    }

    pub async fn load_model(&self, raw: &Value) -> EngineResult<LoadReply> {
        self.load_model_with_progress(raw, None).await
    }

    /// `loadModel` with spec §15 progress: `download` events while a hub model's files are
    /// fetched (off the engine thread), then one `load` event right before the weights are read.
    pub async fn load_model_with_progress(&self, raw: &Value, progress: Option<ProgressFn>) -> EngineResult<LoadReply> {
        let opts = normalize_load_options(raw)?;
        let epoch = self.shutdown_epoch();
        let shutdowns = self.shutdowns.clone();
        let cancelled = Arc::new(move || shutdowns.load(Ordering::Acquire) != epoch);
        let source = resolve_source(&self.config.hub, &opts, progress.clone(), cancelled).await?;
        if let Some(f) = &progress {
            f(&LoadProgress::load());
        }
        self.request_in_epoch(epoch, |reply| Command::Load { opts, source, reply }).await
    }

    /// A load begun before a shutdown must neither restart the stopped engine nor resolve with
    /// a model the shutdown dropped: it fails with RuntimeError in both cases.
    async fn request_in_epoch<T>(&self, epoch: u64, make: impl FnOnce(oneshot::Sender<EngineResult<T>>) -> Command) -> EngineResult<T> {
        let shut_down = || EngineError::runtime("Engine shutdown in progress");
        let rx = {
            let mut guard = self.running.lock();
            if self.shutdown_epoch() != epoch {
                return Err(shut_down());
            }
            self.send(&mut guard, make)?
        };
        let r = received(rx).await?;
        if self.shutdown_epoch() != epoch {
            return Err(shut_down()); // answered, then the shutdown queued behind it dropped the model
        }
        r
    }

    fn shutdown_epoch(&self) -> u64 {
        self.shutdowns.load(Ordering::Acquire)
    }

    pub async fn unload_model(&self, id: String) -> EngineResult<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.request(|reply| Command::Unload { id, reply }).await
    }

    pub async fn tokenize(&self, raw: &Value) -> EngineResult<TokenizeReply> {
        let req = normalize_tokenize_request(raw)?;
        self.request(|reply| Command::Tokenize { req, reply }).await
    }

    /// Validates, prepares and registers a stream; errors here happen before any token.
    pub async fn create_stream(&self, raw: &Value, options: &Value) -> EngineResult<StreamHandle> {
        let params = normalize_generator_params(raw)?;
        let StreamOptions { stream_id, timeout_ms } = normalize_stream_options(options)?;
        let id = stream_id.unwrap_or_else(|| format!("stream-{}-{}", std::process::id(), self.next_stream.fetch_add(1, Ordering::Relaxed)));
        let (tx, rx) = tmpsc::unbounded_channel();
        let cancel = Arc::new(AtomicU8::new(0));
        let start = StartStream { params, id: id.clone(), timeout_ms, tx, cancel: cancel.clone(), vision: None };
        self.request(|reply| Command::Start { start: Box::new(start), reply }).await?;
        self.active.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(ActiveSlot { counter: self.active.clone(), released: Default::default() });
        Ok(StreamHandle { id, rx, control: StreamControl { cancel, slot } })
    }

    /// Spec §7.8: the CompatibilityReport of two loaded models (ModelNotLoaded for either id
    /// not loaded); a compatible pair is remembered as primary → draft.
    pub async fn check_draft(&self, primary: &Value, draft: &Value) -> EngineResult<Value> {
        let pair = (model_id_arg(primary, "primaryId")?, model_id_arg(draft, "draftId")?);
        let mut replies = self.check_drafts(vec![pair]).await?;
        replies.pop().unwrap_or_else(|| Err(EngineError::runtime("draft check returned no result")))
    }

    /// `batch_check_draft`: several pairs in one engine round trip, each result on its own.
    pub async fn check_drafts(&self, pairs: Vec<(String, String)>) -> EngineResult<BatchReply<Value>> {
        self.request(|reply| Command::CheckDraft(CheckDraft { pairs, reply })).await
    }

    /// `batch_tokenize`: several raw tokenize requests in one engine round trip; each is
    /// validated on its own and fails (InvalidParams / ModelNotLoaded / …) on its own.
    pub async fn tokenize_batch(&self, raws: &[Value]) -> EngineResult<BatchReply<TokenizeReply>> {
        let reqs = raws.iter().map(normalize_tokenize_request).collect();
        self.request(|reply| Command::TokenizeBatch(TokenizeBatch { reqs, reply })).await
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<EngineResult<T>>) -> Command) -> EngineResult<T> {
        let rx = self.send(&mut self.running.lock(), make)?;
        received(rx).await?
    }

    /// Starts the engine thread into `guard` unless it runs, and sends it the command `make`
    /// builds around the reply channel.
    fn send<T>(&self, guard: &mut Option<Running>, make: impl FnOnce(oneshot::Sender<EngineResult<T>>) -> Command) -> EngineResult<oneshot::Receiver<EngineResult<T>>> {
        let tx = self.start_locked(guard)?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply)).map_err(|_| EngineError::runtime("engine thread is not running"))?;
        Ok(rx)
    }
}

/// The engine thread's answer to one command.
async fn received<T>(rx: oneshot::Receiver<EngineResult<T>>) -> EngineResult<EngineResult<T>> {
    rx.await.map_err(|_| EngineError::runtime("engine thread stopped before answering"))
}

/// Counts a stream in `active_streams()` until it ends or is cancelled (released once).
pub struct ActiveSlot {
    counter: Arc<AtomicUsize>,
    released: std::sync::atomic::AtomicBool,
}

impl ActiveSlot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Cancels a stream from any thread without waiting for its receiver.
#[derive(Clone)]
pub struct StreamControl {
    cancel: Arc<AtomicU8>,
    slot: Arc<ActiveSlot>,
}

impl StreamControl {
    /// `abort = false`: end silently (`return()`), slot freed now; `abort = true`: the stream
    /// ends with one Cancelled error chunk at its next step.
    pub fn cancel(&self, abort: bool) {
        let flag = if abort { CANCEL_ABORT } else { CANCEL_RETURN };
        let _ = self.cancel.compare_exchange(0, flag, Ordering::AcqRel, Ordering::Acquire);
        if !abort {
            self.slot.release();
        }
    }
}

/// The consumer's end of one generation stream.
pub struct StreamHandle {
    pub id: String,
    rx: tmpsc::UnboundedReceiver<Chunk>,
    control: StreamControl,
}

impl StreamHandle {
    /// Waits for the next chunks (all that are ready, at least one); empty once the stream ended.
    pub async fn next_batch(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        match self.rx.recv().await {
            Some(c) => out.push(c),
            None => {
                self.control.slot.release();
                return out;
            }
        }
        while let Ok(c) = self.rx.try_recv() {
            out.push(c);
        }
        if out.iter().any(|c| matches!(c, Chunk::Metadata(_) | Chunk::Error(_))) {
            self.control.slot.release();
        }
        out
    }

    pub fn control(&self) -> StreamControl {
        self.control.clone()
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.control.cancel(false);
    }
}
