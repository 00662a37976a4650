//! ModelLifecycleService: loads model folders into `LoadedModel`s, keeps them in load order,
//! answers lookups, and publishes an immutable snapshot of the handles so that the synchronous
//! `listModels()` / `getModelInfo()` never wait for the engine thread.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::error::{EngineError, EngineResult};
use crate::generation::constraint::GuidanceCache;
use crate::hub::ResolvedModel;
use crate::models::{load_language_model_with, CausalModel, ModelStats};
use crate::params::{LoadModelOptions, ModelDefaults};
use crate::services::draft_compat::DraftPairs;
use crate::models::gguf::{is_gguf_path, load_gguf_model, GgufModelFile};
use crate::text::gguf_tokenizer::tokenizer_from_gguf;
use crate::text::TextTokenizer;
use crate::vision::model::{is_vision_model_dir, VisionModel, MODEL_TYPES as VISION_MODEL_TYPES};

/// Spec §8.9: at most this many models; loading one more evicts the least recently used.
pub const MAX_LOADED_MODELS: usize = 5;
pub const DEFAULT_CONTEXT_LENGTH: u32 = 8192;

pub struct LoadedModel {
    pub id: String,
    pub model: CausalModel,
    pub tokenizer: TextTokenizer,
    pub defaults: ModelDefaults,
    pub handle: Value,
    pub options: LoadModelOptions,
    /// Structured-output tokenizer state, built on the first structured request.
    pub guidance: GuidanceCache,
    /// The vision part of a vision-language model (its language model is `model`).
    pub vision: Option<Rc<VisionModel>>,
}

/// One published entry of the snapshot.
#[derive(Clone)]
pub struct HandleEntry {
    pub id: String,
    pub handle: Value,
    pub last_access_ms: u64,
}

#[derive(Clone, Default)]
pub struct ModelSnapshot {
    inner: Arc<RwLock<Vec<HandleEntry>>>,
}

impl ModelSnapshot {
    pub fn list(&self) -> Vec<Value> {
        self.inner.read().iter().map(|e| e.handle.clone()).collect()
    }
    pub fn get(&self, id: &str) -> Option<Value> {
        self.inner.read().iter().find(|e| e.id == id).map(|e| e.handle.clone())
    }
    pub fn entries(&self) -> Vec<HandleEntry> {
        self.inner.read().clone()
    }
    /// Refreshes a model's LRU time; false when not loaded.
    pub fn touch(&self, id: &str) -> bool {
        let mut guard = self.inner.write();
        match guard.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.last_access_ms = now_ms();
                true
            }
            None => false,
        }
    }
    fn publish(&self, entries: Vec<HandleEntry>) {
        *self.inner.write() = entries;
    }
    pub fn clear(&self) {
        self.inner.write().clear();
    }
}

/// Lives on the engine thread (models hold MLX arrays).
pub struct ModelRegistry {
    models: Vec<Rc<LoadedModel>>,
    snapshot: ModelSnapshot,
    /// Compatible primary → draft pairings found by `isDraftModelCompatible` (spec §7.8).
    pub draft_pairs: DraftPairs,
}

pub enum LoadOutcome {
    /// Same id and options already loaded: the existing handle (no reload).
    Cached(Value),
    Loaded { handle: Value, evicted: Vec<String> },
}

impl ModelRegistry {
    pub fn new(snapshot: ModelSnapshot) -> Self {
        ModelRegistry { models: Vec::new(), snapshot, draft_pairs: DraftPairs::default() }
    }

    pub fn get(&self, id: &str) -> Option<Rc<LoadedModel>> {
        let m = self.models.iter().find(|m| m.id == id).cloned();
        if m.is_some() {
            self.snapshot.touch(id);
        }
        m
    }

    /// `source`: a hub model's local snapshot; `None` loads the local folder the options name.
    pub fn load(&mut self, opts: LoadModelOptions, source: Option<ResolvedModel>) -> EngineResult<LoadOutcome> {
        self.load_checked(opts, source, false)
    }

    /// `loadVisionModel`: like [`Self::load`], but the folder must hold a vision-language model.
    pub fn load_vision(&mut self, opts: LoadModelOptions) -> EngineResult<LoadOutcome> {
        self.load_checked(opts, None, true)
    }

    fn load_checked(&mut self, opts: LoadModelOptions, source: Option<ResolvedModel>, require_vision: bool) -> EngineResult<LoadOutcome> {
        if let Some(existing) = self.models.iter().find(|m| m.id == opts.id) {
            if same_variant(&existing.options, &opts) && (existing.vision.is_some() || !require_vision) {
                self.snapshot.touch(&opts.id);
                return Ok(LoadOutcome::Cached(existing.handle.clone()));
            }
        }
        let dir = match &source {
            Some(s) => s.path.clone(),
            None => resolve_dir(&opts)?,
        };
        let is_vision = dir.is_dir() && is_vision_model_dir(&dir);
        if require_vision && !is_vision {
            return Err(EngineError::model_load(format!(
                "'{}' is not a supported vision-language model (supported model_type: {})",
                opts.id,
                VISION_MODEL_TYPES.join(", ")
            )));
        }
        let (model, stats, tokenizer, vision) = if dir.is_file() {
            let g = GgufModelFile::open(&dir)?;
            let tokenizer = tokenizer_from_gguf(&g)?;
            let (model, stats) = load_gguf_model(&g)?;
            (model, stats, tokenizer, None)
        } else if is_vision {
            let (vision, model, stats) = VisionModel::load(&dir, opts.compute_dtype)?;
            (model, stats, TextTokenizer::from_dir(&dir)?, Some(Rc::new(vision)))
        } else {
            let (model, stats) = load_language_model_with(&dir, opts.compute_dtype)?;
            (model, stats, TextTokenizer::from_dir(&dir)?, None)
        };
        let mut handle = build_handle(&opts, &dir, &model, &tokenizer, &stats);
        if let Some(v) = &vision {
            crate::vision::handle::make_vision_handle(&mut handle, &opts, v);
        }
        if let Some(s) = &source {
            mark_hub_source(&mut handle, s);
        }
        let loaded = LoadedModel { id: opts.id.clone(), model, tokenizer, defaults: opts.defaults.clone(), handle: handle.clone(), options: opts, guidance: GuidanceCache::default(), vision };
        // Different options for the same id replace it.
        self.models.retain(|m| m.id != loaded.id);
        self.draft_pairs.forget(&loaded.id);
        let mut evicted = Vec::new();
        while self.models.len() >= MAX_LOADED_MODELS {
            let lru = self.least_recently_used();
            self.models.retain(|m| m.id != lru);
            self.draft_pairs.forget(&lru);
            evicted.push(lru);
        }
        self.models.push(Rc::new(loaded));
        self.publish();
        Ok(LoadOutcome::Loaded { handle, evicted })
    }

    pub fn unload(&mut self, id: &str) -> bool {
        let before = self.models.len();
        self.models.retain(|m| m.id != id);
        self.draft_pairs.forget(id);
        self.publish();
        before != self.models.len()
    }

    pub fn clear(&mut self) {
        self.models.clear();
        self.draft_pairs.clear();
        self.snapshot.clear();
    }

    fn least_recently_used(&self) -> String {
        let entries = self.snapshot.entries();
        entries
            .iter()
            .filter(|e| self.models.iter().any(|m| m.id == e.id))
            .min_by_key(|e| e.last_access_ms)
            .map(|e| e.id.clone())
            .unwrap_or_else(|| self.models[0].id.clone())
    }

    fn publish(&self) {
        let old = self.snapshot.entries();
        let entries = self
            .models
            .iter()
            .map(|m| HandleEntry {
                id: m.id.clone(),
                handle: m.handle.clone(),
                last_access_ms: old.iter().find(|e| e.id == m.id).map(|e| e.last_access_ms).unwrap_or_else(now_ms),
            })
            .collect();
        self.snapshot.publish(entries);
    }
}

fn same_variant(a: &LoadModelOptions, b: &LoadModelOptions) -> bool {
    a.draft == b.draft && a.revision == b.revision && a.quantization == b.quantization && a.local_path == b.local_path && a.compute_dtype == b.compute_dtype
}

/// The folder (or `.gguf` file) to load: `localPath` when given, else the model id (or
/// descriptor path) as a path.
fn resolve_dir(opts: &LoadModelOptions) -> EngineResult<PathBuf> {
    let raw = opts.local_path.clone().or_else(|| opts.descriptor_path.clone()).unwrap_or_else(|| opts.id.clone());
    let dir = PathBuf::from(&raw);
    if !dir.exists() {
        return Err(EngineError::model_load(format!(
            "model '{raw}' not found: no such local folder or .gguf file, and not a Hugging Face hub id ('org/name' or 'org/name/<file>.gguf')"
        ))
        .with_detail("path", raw));
    }
    if !dir.is_dir() && !(dir.is_file() && is_gguf_path(&dir)) {
        return Err(EngineError::model_load(format!("model path '{raw}' is neither a directory nor a .gguf file")).with_detail("path", raw));
    }
    Ok(dir)
}

fn build_handle(opts: &LoadModelOptions, dir: &Path, model: &CausalModel, tok: &TextTokenizer, stats: &ModelStats) -> Value {
    let cfg = model.config();
    let context_length = cfg.context_length.or(opts.context_length).unwrap_or(DEFAULT_CONTEXT_LENGTH);
    let quantization = match &cfg.quantization {
        Some(q) if q.bits == 4 => "int4".to_string(),
        Some(q) if q.bits == 8 => "int8".to_string(),
        Some(q) => format!("int{}", q.bits),
        None => opts.quantization.clone().unwrap_or_else(|| "none".into()),
    };
    let mut metadata = json!({
        "parameterCount": stats.parameter_count,
        // EXT: `dtype` is the compute dtype (CPU backend: f32, DESIGN.md decision 8);
        // `storedDtype` what the folder holds; `memoryUsage` the weights' bytes in memory.
        "dtype": stats.dtype,
        "storedDtype": stats.stored_dtype,
        "memoryUsage": stats.memory_bytes,
        "dequantized": stats.dequantized,
        "isVisionModel": false,
        "tokenizerType": "huggingface",
        "quantization": quantization,
        "draft": opts.draft,
        "modelType": cfg.model_type,
        "vocabSize": tok.vocab_size(),
    });
    if let Some(rev) = &opts.revision {
        metadata["revision"] = json!(rev);
    }
    let mut special = serde_json::Map::new();
    if let Some(b) = tok.bos_id() {
        special.insert("bos".into(), json!(b));
    }
    if let Some(e) = tok.eos_ids().first() {
        special.insert("eos".into(), json!(e));
    }
    json!({
        "descriptor": {
            "id": opts.id,
            "source": "local",
            "path": dir.to_string_lossy(),
            "modality": "text",
            "family": "mlx-lm",
            "tokenizer": {"type": "huggingface", "vocabSize": tok.vocab_size(), "specialTokens": special},
        },
        "state": "ready",
        "contextLength": context_length,
        "metadata": metadata,
        "draft": opts.draft,
    })
}

/// §8.1: a hub model's descriptor says `huggingface`; metadata names the revision and the
/// commit it resolved to (EXT `commit`).
fn mark_hub_source(handle: &mut Value, s: &ResolvedModel) {
    handle["descriptor"]["source"] = json!("huggingface");
    handle["metadata"]["revision"] = json!(s.revision);
    handle["metadata"]["commit"] = json!(s.commit);
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
