//! `NativeEngine`: the napi class the JS `Engine` delegates to (see docs/NATIVE_API.md).

use std::sync::Arc;

use mlx_serving_core::services::draft_compat::model_id_arg;
use mlx_serving_core::services::runtime_info::runtime_info;
use mlx_serving_core::{Engine, EngineConfig, EngineError, EngineResult};
use mlx_serving_core::hub::{LoadProgress, ProgressFn};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ErrorStrategy, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::{json, Value};

use crate::convert::to_napi;
use crate::native_stream::NativeStream;

#[napi]
pub struct NativeEngine {
    engine: Arc<Engine>,
}

#[napi]
impl NativeEngine {
    /// options: the `EngineOptions` fields the engine uses (`{promptCache?, hub?}`); unknown keys ignored.
    #[napi(constructor)]
    pub fn new(mut env: Env, options: Option<Value>) -> Result<Self> {
        stop_engines_at_env_teardown(&mut env)?;
        let config = EngineConfig::from_options(&options.unwrap_or(Value::Null)).map_err(to_napi)?;
        Ok(NativeEngine { engine: Arc::new(Engine::with_config(config)) })
    }

    #[napi]
    pub async fn start(&self) -> Result<()> {
        self.engine.start().map_err(to_napi)
    }

    #[napi]
    pub async fn shutdown(&self) -> Result<()> {
        self.engine.shutdown().await;
        Ok(())
    }

    #[napi]
    pub fn is_running(&self) -> bool {
        self.engine.is_running()
    }

    #[napi]
    pub fn uptime_ms(&self) -> f64 {
        self.engine.uptime_ms()
    }

    #[napi]
    pub fn active_streams(&self) -> u32 {
        self.engine.active_streams() as u32
    }

    /// Resolves with the ModelHandle (spec §8.1). Models evicted to make room (LRU, spec §8.9)
    /// disappear from `listModels()`. `onProgress(payload)` receives the spec §15 payloads
    /// (`download` while a hub model's files are fetched, then one `load`), queued to the JS
    /// thread in order; the `load` one is always sent before the promise settles successfully.
    /// It must not throw (an exception in it would be fatal): the facade passes a guarded one.
    #[napi(ts_args_type = "raw: unknown, onProgress?: (payload: {phase: string, loadedBytes?: number, totalBytes?: number, file?: string}) => void")]
    pub async fn load_model(&self, raw: Value, on_progress: Option<ThreadsafeFunction<Value, ErrorStrategy::Fatal>>) -> Result<Value> {
        let progress: Option<ProgressFn> = on_progress.map(|tsfn| {
            let f: ProgressFn = std::sync::Arc::new(move |p: &LoadProgress| {
                tsfn.call(p.to_json(), ThreadsafeFunctionCallMode::NonBlocking);
            });
            f
        });
        let r = self.engine.load_model_with_progress(&raw, progress).await.map_err(to_napi)?;
        Ok(r.handle)
    }

    #[napi]
    pub async fn unload_model(&self, id: String) -> Result<()> {
        self.engine.unload_model(id).await.map_err(to_napi)
    }

    #[napi]
    pub fn list_models(&self) -> Vec<Value> {
        self.engine.list_models()
    }

    #[napi]
    pub fn get_model_info(&self, id: String) -> Option<Value> {
        self.engine.get_model_info(&id)
    }

    #[napi]
    pub fn touch_model(&self, id: String) -> bool {
        self.engine.touch_model(&id)
    }

    /// `getBatchStats()` (spec §8.7 + §15 `generation`): the original tokenize/draft-check
    /// batching counters (this engine has no such queues: zeros) and continuous-batching figures.
    #[napi]
    pub fn batch_stats(&self) -> Value {
        let perf = json!({"avgBatchTime": 0, "p50BatchTime": 0, "p95BatchTime": 0, "p99BatchTime": 0,
                          "avgBatchSize": 0, "avgQueueLatency": 0, "p95QueueLatency": 0, "samplesRecorded": 0});
        json!({
            "tokenizeBatches": 0, "tokenizeRequests": 0, "checkDraftBatches": 0, "checkDraftRequests": 0,
            "tokenizeQueueSize": 0, "checkDraftQueueSize": 0, "tokenizeEfficiency": 0, "checkDraftEfficiency": 0,
            "tokenizeFallbacks": 0, "checkDraftFallbacks": 0, "currentMaxBatchSize": 16, "initialMaxBatchSize": 16,
            "adaptiveSizingEnabled": false, "tokenizePerformance": perf.clone(), "checkDraftPerformance": perf,
            "generation": self.engine.batch_stats(),
        })
    }

    #[napi]
    pub fn reset_batch_stats(&self) {
        self.engine.reset_batch_stats();
    }

    #[napi]
    pub fn cache_stats(&self) -> Value {
        self.engine.cache_stats()
    }

    #[napi]
    pub async fn tokenize(&self, raw: Value) -> Result<Value> {
        let r = self.engine.tokenize(&raw).await.map_err(to_napi)?;
        Ok(json!({"tokens": r.tokens, "tokenStrings": r.token_strings}))
    }

    /// options: `{streamId?, timeoutMs?}`, validated in Rust (InvalidParams naming the field).
    #[napi]
    pub async fn create_stream(&self, raw: Value, options: Option<Value>) -> Result<NativeStream> {
        let options = options.unwrap_or(Value::Null);
        let handle = self.engine.create_stream(&raw, &options).await.map_err(to_napi)?;
        Ok(NativeStream::new(handle))
    }

    /// Spec §7.12 `loadVisionModel`: resolves with the VisionModelHandle.
    #[napi]
    pub async fn load_vision_model(&self, raw: Value) -> Result<Value> {
        let r = self.engine.load_vision_model(&raw).await.map_err(to_napi)?;
        Ok(r.handle)
    }

    /// Spec §7.12 vision stream: image sources are strings (path, URL, data URI, base64; the JS
    /// facade turns Buffers into data URIs). Images are read and preprocessed off the engine thread.
    #[napi]
    pub async fn create_vision_stream(&self, raw: Value, options: Option<Value>) -> Result<NativeStream> {
        let options = options.unwrap_or(Value::Null);
        let handle = self.engine.create_vision_stream(&raw, &options).await.map_err(to_napi)?;
        Ok(NativeStream::new(handle))
    }

    /// Spec §7.8 / §8.5 CompatibilityReport; ModelNotLoaded when either id is not loaded.
    #[napi]
    pub async fn check_draft_compatibility(&self, primary_id: Value, draft_id: Value) -> Result<Value> {
        self.engine.check_draft(&primary_id, &draft_id).await.map_err(to_napi)
    }

    /// `batch_check_draft`: `[{primaryId, draftId}]` → `[{success, result?, error?}]` in order,
    /// one engine round trip; a bad or unknown pair fails alone.
    #[napi]
    pub async fn check_draft_compatibility_batch(&self, pairs: Value) -> Result<Vec<Value>> {
        let items = batch_items(&pairs, "pairs").map_err(to_napi)?;
        let parsed: Vec<EngineResult<(String, String)>> = items.iter().map(draft_pair).collect();
        let valid: Vec<(String, String)> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let mut reports = self.engine.check_drafts(valid).await.map_err(to_napi)?.into_iter();
        Ok(parsed
            .into_iter()
            .map(|p| match p {
                Ok(_) => batch_entry(reports.next().unwrap_or_else(|| Err(EngineError::runtime("missing draft check result")))),
                Err(e) => batch_entry(Err(e)),
            })
            .collect())
    }

    /// `batch_tokenize`: raw TokenizeRequests → `[{success, result?: {tokens, tokenStrings},
    /// error?}]` in order, one engine round trip; each request is validated on its own.
    #[napi]
    pub async fn tokenize_batch(&self, requests: Value) -> Result<Vec<Value>> {
        let items = batch_items(&requests, "requests").map_err(to_napi)?;
        let replies = self.engine.tokenize_batch(&items).await.map_err(to_napi)?;
        Ok(replies
            .into_iter()
            .map(|r| batch_entry(r.map(|t| json!({"tokens": t.tokens, "tokenStrings": t.token_strings}))))
            .collect())
    }

    #[napi]
    pub async fn runtime_info(&self) -> Result<Value> {
        self.engine.start().map_err(to_napi)?;
        Ok(runtime_info(env!("CARGO_PKG_VERSION")))
    }
}

#[napi]
pub fn package_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

fn batch_items(raw: &Value, field: &str) -> EngineResult<Vec<Value>> {
    raw.as_array().cloned().ok_or_else(|| {
        EngineError::invalid_params(format!("Validation error on field '{field}': Expected array")).with_detail("field", field)
    })
}

/// `{primaryId, draftId}` (snake_case `primary_id` / `draft_id` accepted).
fn draft_pair(item: &Value) -> EngineResult<(String, String)> {
    let get = |camel: &str, snake: &str| item.get(camel).or_else(|| item.get(snake)).cloned().unwrap_or(Value::Null);
    let primary = model_id_arg(&get("primaryId", "primary_id"), "primaryId")?;
    let draft = model_id_arg(&get("draftId", "draft_id"), "draftId")?;
    Ok((primary, draft))
}

/// One entry of a batched reply; `error` is the `{code, message, details?, retryable}` payload
/// native rejections carry (docs/NATIVE_API.md "Errors").
fn batch_entry(r: EngineResult<Value>) -> Value {
    match r {
        Ok(result) => json!({"success": true, "result": result}),
        Err(e) => json!({"success": false, "error": e.to_json()}),
    }
}

/// Node tears the environment down before `exit()`: its cleanup hooks run before any `atexit`
/// handler and any C++ static destructor, so this is where an engine thread still decoding (an
/// abandoned generator) is stopped before MLX's static state goes away (see
/// `mlx_serving_core::engine::exit_guard`). Registered once per process.
fn stop_engines_at_env_teardown(env: &mut Env) -> Result<()> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = env.add_env_cleanup_hook((), |_| mlx_serving_core::engine::exit_guard::stop_engine_threads()).map(|_| ());
    });
    result
}
