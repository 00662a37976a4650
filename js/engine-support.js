'use strict';
// Constant shapes and small helpers of the Engine facade (kept apart so engine.js reads as
// the lifecycle/event logic only).

const { Coalescer } = require('./batching');

const CACHE_HEALTH_EMPTY = Object.freeze({
  healthy: true, sizeBytes: 0, entryCount: 0, hitRate: 0, nearLimit: false,
});

// §4: snake_case aliases are own instance properties holding bound functions.
const ALIASES = Object.freeze({
  load_model: 'loadModel',
  unload_model: 'unloadModel',
  load_draft_model: 'loadDraftModel',
  unload_draft_model: 'unloadDraftModel',
  is_draft_model_compatible: 'isDraftModelCompatible',
  create_generator: 'createGenerator',
  list_models: 'listModels',
  get_model_info: 'getModelInfo',
  get_runtime_info: 'getRuntimeInfo',
  health_check: 'healthCheck',
  warmup_model: 'warmupModel',
  get_cache_stats: 'getCacheStats',
  load_vision_model: 'loadVisionModel',
  create_vision_generator: 'createVisionGenerator',
});

/** Display-only id for progress events before the addon has normalized the options. */
function progressModelId(options) {
  if (typeof options === 'string') return options;
  if (!options || typeof options !== 'object') return undefined;
  const model = options.model_id !== undefined ? options.model_id : options.model;
  if (typeof model === 'string') return model;
  return model && typeof model === 'object' && typeof model.id === 'string' ? model.id : undefined;
}

function unhealthy(runtimeStatus) {
  return {
    status: 'unhealthy', uptime: 0, activeStreams: 0, loadedModels: 0,
    runtime: { status: runtimeStatus },
  };
}

/** The model id a generator request names (§5.1: `model` wins over `model_id`). */
function requestedModelId(params) {
  if (!params || typeof params !== 'object') return undefined;
  const id = params.model !== undefined ? params.model : params.model_id;
  return typeof id === 'string' ? id : undefined;
}

/** `batch_tokenize` / `batch_check_draft`: coalesce same-tick calls when the addon has them. */
function batchesOf(ne) {
  const has = (name) => typeof ne[name] === 'function';
  return {
    tokenize: new Coalescer((raw) => ne.tokenize(raw),
      has('tokenizeBatch') ? (raws) => ne.tokenizeBatch(raws) : null),
    checkDraft: new Coalescer(
      (pair) => ne.checkDraftCompatibility(pair.primaryId, pair.draftId),
      has('checkDraftCompatibilityBatch') ? (pairs) => ne.checkDraftCompatibilityBatch(pairs) : null,
    ),
  };
}

/**
 * Relays the addon's load-progress payloads to `emit` (onProgress + `model:progress`). The addon
 * calls `forward` from its queue, where a throw would be fatal, so the first listener exception
 * is kept and rethrown by `settled()` (§9.1: listener exceptions reject the triggering call).
 * The addon sends the `load` payload before its promise settles; `settled()` waits for it so
 * every progress event precedes `model:loaded`.
 */
function progressRelay(emit) {
  let sawLoad;
  const loadSeen = new Promise((resolve) => { sawLoad = resolve; });
  let listenerError = null;
  const forward = (payload) => {
    try {
      emit(payload);
    } catch (err) {
      if (!listenerError) listenerError = err;
    }
    if (payload && payload.phase === 'load') sawLoad();
  };
  const settled = async () => {
    await loadSeen;
    if (listenerError) throw listenerError;
  };
  return { forward, settled };
}

/**
 * The native load with its §15 progress: a vision load reports one `load` phase; a text load
 * relays the addon's own payloads (`download`, then `load`) in order before it settles.
 */
async function nativeLoad(native, rawOptions, vision, report) {
  if (vision) {
    report({ phase: 'load' });
    return native.loadVisionModel(rawOptions);
  }
  const relay = progressRelay(report);
  const handle = await native.loadModel(rawOptions, relay.forward);
  await relay.settled();
  return handle;
}

module.exports = {
  CACHE_HEALTH_EMPTY, ALIASES, progressModelId, requestedModelId, unhealthy, batchesOf, nativeLoad,
};
