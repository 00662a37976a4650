'use strict';
// The public `Engine` class (spec §3, §4, §9): a thin facade over the native `NativeEngine`.
// What lives here is only what JavaScript semantics need — the eventemitter3 base class, lazy
// start / shared shutdown promise, re-wrapping native errors into `EngineClientError`, event
// emission, and real AsyncGenerators. Validation, normalization, model state and generation are
// all in Rust (DESIGN.md decision 4).

const EventEmitter = require('eventemitter3');
const { EngineClientError, fromNative } = require('./errors');
const { streamChunks } = require('./stream');
const { toRawArg } = require('./raw');
const { nativeOptionsOf } = require('./engine-options');
const { notSupported } = require('./unsupported');
const { visionGenerator } = require('./vision');
const {
  CACHE_HEALTH_EMPTY, ALIASES, progressModelId, requestedModelId, unhealthy, batchesOf, nativeLoad,
} = require('./engine-support');

/** Module-internal entry used by createEngine(): starts the runtime without another call. */
const kStart = Symbol('mlx-serving.start');

function loadNativeModule() {
  // Required on first use, not at import: `new Engine()` must stay free of I/O (§2.1).
  return require('./native');
}

class Engine extends EventEmitter {
  #nativeModule;
  #native = null; // NativeEngine, created on first start
  #startPromise = null;
  #shutdownPromise = null;
  #telemetry;
  #logger;
  #nativeOptions; // the EngineOptions fields the native engine reads ({promptCache, hub})
  #batches = null; // {tokenize, checkDraft}: Coalescers over the native batch entry points
  #shutdownEpoch = 0; // bumped when a shutdown begins: loads started before it must not resolve

  /**
   * @param {object} [options] EngineOptions; unknown keys ignored (Python-era keys included).
   * @param {{logger?: object, runner?: unknown}} [deps] `runner` is accepted and ignored (§11).
   */
  constructor(options, deps) {
    super();
    const opts = options && typeof options === 'object' ? options : {};
    const d = deps && typeof deps === 'object' ? deps : {};
    this.#nativeOptions = nativeOptionsOf(opts);
    const telemetry = opts.telemetry;
    this.#telemetry = telemetry && telemetry.enabled === true && telemetry.hooks
      ? telemetry.hooks : null;
    this.#logger = d.logger && typeof d.logger === 'object' ? d.logger : null;
    // Test seam (not public API): a fake of the native module's shape.
    this.#nativeModule = d.native || null;
    for (const [alias, method] of Object.entries(ALIASES)) {
      Object.defineProperty(this, alias, {
        value: this[method].bind(this), enumerable: true, writable: true, configurable: true,
      });
    }
  }

  // ---- lifecycle (§3) ----------------------------------------------------------------------

  #nativeEngine() {
    if (!this.#native) {
      if (!this.#nativeModule) this.#nativeModule = loadNativeModule();
      this.#native = new this.#nativeModule.NativeEngine(this.#nativeOptions);
      this.#batches = batchesOf(this.#native);
    }
    return this.#native;
  }

  /** Lazily start the runtime; rejects RuntimeError while a shutdown is in progress. */
  async #ensureStarted() {
    if (this.#shutdownPromise) {
      throw new EngineClientError('RuntimeError', 'Engine shutdown in progress');
    }
    if (this.#startPromise) return this.#startPromise;
    let ne;
    try {
      ne = this.#nativeEngine();
      if (ne.isRunning()) return undefined;
    } catch (err) {
      throw fromNative(err, 'RuntimeError');
    }
    const p = (async () => {
      try {
        await ne.start();
      } catch (err) {
        const e = fromNative(err, 'RuntimeError');
        throw e.code === 'RuntimeError' ? e
          : new EngineClientError('RuntimeError', `Engine failed to start: ${e.message}`);
      }
    })();
    this.#startPromise = p;
    try {
      await p;
    } finally {
      if (this.#startPromise === p) this.#startPromise = null;
    }
    return undefined;
  }

  [kStart]() {
    return this.#ensureStarted();
  }

  shutdown() {
    if (this.#shutdownPromise) return this.#shutdownPromise;
    const starting = this.#startPromise;
    const ne = this.#native;
    if (!ne || (!starting && !this.#safeIsRunning(ne))) return Promise.resolve();
    this.#shutdownEpoch += 1;
    const p = (async () => {
      try {
        if (starting) await starting.catch(() => undefined);
        await ne.shutdown();
      } catch (err) {
        throw this.#fail(err, 'RuntimeError', 'shutdown');
      }
    })();
    this.#shutdownPromise = p;
    // Clear the shared promise once settled so the engine can restart (§14.9).
    p.then(() => this.#clearShutdown(p), () => this.#clearShutdown(p));
    return p;
  }

  #clearShutdown(p) {
    if (this.#shutdownPromise === p) this.#shutdownPromise = null;
  }

  dispose() {
    return this.shutdown();
  }

  #safeIsRunning(ne) {
    try {
      return ne.isRunning();
    } catch {
      return false;
    }
  }

  // ---- events & telemetry (§9) -----------------------------------------------------------

  /** Wrap, emit `error` (eventemitter3: harmless with no listener) and return the error. */
  #fail(err, fallbackCode, context) {
    const e = fromNative(err, fallbackCode);
    this.#emitError(e, context);
    return e;
  }

  #emitError(e, context) {
    const error = e.toObject();
    this.#hook('onError', error);
    this.emit('error', { error, context, timestamp: Date.now() });
  }

  /** Telemetry hooks (§9.3): only when enabled; a throwing hook never breaks the call. */
  #hook(name, ...args) {
    const fn = this.#telemetry && this.#telemetry[name];
    if (typeof fn !== 'function') return;
    try {
      fn(...args);
    } catch (err) {
      if (this.#logger && typeof this.#logger.warn === 'function') {
        this.#logger.warn({ err, hook: name }, 'telemetry hook threw; ignored');
      }
    }
  }

  /** §15: `onProgress(payload)` and the `model:progress` event (payload plus `modelId`). */
  #progress(onProgress, payload, modelId) {
    if (typeof onProgress === 'function') {
      try {
        onProgress({ ...payload });
      } catch {
        // a caller's progress callback must not fail the load
      }
    }
    this.emit('model:progress', { ...payload, modelId });
  }

  // ---- models (§4, §5.2, §8.1) -------------------------------------------------------------

  async #load(options, { fallback, context, announce, invalidAs, vision }) {
    const onProgress = options && typeof options === 'object' ? options.onProgress : undefined;
    let modelId = progressModelId(options);
    let handle;
    let before;
    // §3: a shutdown that begins while this load is in flight drops every model, so the load
    // must not resolve with a handle of a model that is gone (nor restart the engine).
    const epoch = this.#shutdownEpoch;
    const checkNoShutdown = () => {
      if (epoch !== this.#shutdownEpoch) {
        throw new EngineClientError('RuntimeError', 'Engine shutdown in progress');
      }
    };
    try {
      await this.#ensureStarted();
      checkNoShutdown();
      // Validate first (§6: nothing is announced for a request that cannot load).
      const check = this.#nativeModule.checkLoadModelOptions;
      if (typeof check === 'function' && !vision) modelId = check(toRawArg(options));
      before = this.#loadedIds();
      const report = (payload) => this.#progress(onProgress, payload, modelId);
      handle = await nativeLoad(this.#nativeEngine(), toRawArg(options), vision, report);
      checkNoShutdown();
    } catch (err) {
      let e = fromNative(err, fallback);
      if (invalidAs && e.code === 'InvalidParams') {
        e = new EngineClientError(invalidAs, e.message, e.details);
      }
      this.#emitError(e, context);
      throw e;
    }
    this.#announceEvictions(before, handle.descriptor.id);
    if (announce) {
      this.#hook('onModelLoaded', handle);
      this.emit('model:loaded', {
        modelId: handle.descriptor.id, handle, timestamp: Date.now(),
      });
    }
    return handle;
  }

  #loadedIds() {
    return new Set(this.listModels().map((h) => h.descriptor.id));
  }

  /** §8.9: a load that made room by evicting LRU models announces them as unloaded. */
  #announceEvictions(before, loadedId) {
    const now = this.#loadedIds();
    for (const id of before) {
      if (id !== loadedId && !now.has(id)) {
        this.emit('model:unloaded', { modelId: id, timestamp: Date.now() });
      }
    }
  }

  loadModel(options) {
    return this.#load(options, { fallback: 'ModelLoadError', context: 'loadModel', announce: true });
  }

  loadDraftModel(options) {
    let withDraft = options;
    if (typeof options === 'string') withDraft = { model: options, draft: true };
    else if (options && typeof options === 'object') withDraft = { ...options, draft: true };
    return this.#load(withDraft, {
      fallback: 'ModelLoadError', context: 'loadDraftModel', announce: true,
    });
  }

  /**
   * Loads (or touches) a model without announcing it (§4: no `model:loaded`). The original did
   * not validate here, so bad input surfaces as ModelLoadError.
   */
  async warmupModel(options) {
    await this.#load(options, {
      fallback: 'ModelLoadError', context: 'warmupModel', invalidAs: 'ModelLoadError',
    });
  }

  async unloadModel(id) {
    try {
      await this.#ensureStarted();
      await this.#nativeEngine().unloadModel(id);
    } catch (err) {
      throw this.#fail(err, 'RuntimeError', 'unloadModel');
    }
    this.emit('model:unloaded', { modelId: id, timestamp: Date.now() });
  }

  /** No id → the most recently loaded draft (from the native load-order snapshot), if any. */
  async unloadDraftModel(id) {
    if (id !== undefined && id !== null) {
      try {
        await this.#ensureStarted();
        await this.#nativeEngine().unloadModel(id);
      } catch (err) {
        throw this.#fail(err, 'RuntimeError', 'unloadDraftModel');
      }
      this.emit('model:unloaded', { modelId: id, timestamp: Date.now() });
      return;
    }
    const drafts = this.listModels().filter((h) => h.draft === true);
    if (drafts.length === 0) return;
    try {
      await this.#nativeEngine().unloadModel(drafts[drafts.length - 1].descriptor.id);
    } catch (err) {
      throw this.#fail(err, 'RuntimeError', 'unloadDraftModel');
    }
  }

  /** §7.8 / §8.5, computed natively; concurrent calls share one engine round trip. */
  async isDraftModelCompatible(primaryId, draftId) {
    try {
      await this.#ensureStarted();
      const ne = this.#nativeEngine();
      if (typeof ne.checkDraftCompatibility !== 'function') {
        // An addon built without the native check (facade tests' fake): fail loudly.
        for (const id of [primaryId, draftId]) {
          if (ne.getModelInfo(id) == null) {
            throw new EngineClientError('ModelNotLoaded', `Model not loaded: ${id}`);
          }
        }
        throw notSupported('RuntimeError', 'isDraftModelCompatible');
      }
      return await this.#batches.checkDraft.push({
        primaryId: toRawArg(primaryId), draftId: toRawArg(draftId),
      });
    } catch (err) {
      throw this.#fail(err, 'RuntimeError', 'isDraftModelCompatible');
    }
  }

  listModels() {
    try {
      return this.#native ? this.#native.listModels() : [];
    } catch {
      return [];
    }
  }

  getModelInfo(id) {
    try {
      const handle = this.#native ? this.#native.getModelInfo(id) : null;
      return handle == null ? undefined : handle;
    } catch {
      return undefined;
    }
  }

  // ---- generation (§7) ---------------------------------------------------------------------

  /** Sync; nothing happens until the first next() (§7.1). */
  createGenerator(params, options) {
    const opts = options && typeof options === 'object' ? options : {};
    const open = async () => {
      await this.#ensureStarted();
      const streamOptions = {};
      if (opts.streamId !== undefined) streamOptions.streamId = opts.streamId;
      if (opts.timeoutMs !== undefined) streamOptions.timeoutMs = opts.timeoutMs;
      try {
        return await this.#nativeEngine().createStream(toRawArg(params), toRawArg(streamOptions));
      } catch (err) {
        throw fromNative(err, 'GenerationError');
      }
    };
    return streamChunks(open, opts, this.#streamObserver(params));
  }

  /**
   * Telemetry per stream (§9.3). `onTokenGenerated` gets GenerationStats so far (times in
   * seconds since the generator was created), with the requested model id.
   */
  #streamObserver(params) {
    if (!this.#telemetry) return {};
    const modelId = requestedModelId(params);
    const started = Date.now();
    let first;
    return {
      onToken: (chunk, count) => {
        const now = Date.now();
        if (first === undefined) first = now;
        const totalTime = Math.max((now - started) / 1000, 0.0001);
        const decode = (now - first) / 1000;
        this.#hook('onTokenGenerated', chunk.token, {
          tokensGenerated: count,
          tokensPerSecond: decode > 0 ? (count - 1) / decode : 0,
          timeToFirstToken: (first - started) / 1000,
          totalTime,
          modelId,
        });
      },
      onMetadata: (stats) => this.#hook('onGenerationCompleted', stats),
      onErrorChunk: (error) => this.#hook('onError', error),
    };
  }

  /** §7.4: concatenated token text; an error chunk becomes a thrown EngineClientError. */
  async generate(params, options) {
    let text = '';
    for await (const chunk of this.createGenerator(params, options)) {
      if (chunk.type === 'token') {
        text += chunk.token;
      } else if (chunk.type === 'error') {
        const e = chunk.error;
        throw new EngineClientError(e.code ?? 'GenerationError', e.message, {
          ...e.details, engineError: e,
        });
      }
    }
    return text;
  }

  async tokenize(request) {
    try {
      await this.#ensureStarted();
      this.#nativeEngine();
      return await this.#batches.tokenize.push(toRawArg(request));
    } catch (err) {
      const e = fromNative(err, 'TokenizerError');
      // §9.2: only runtime-side tokenizer failures are announced, not validation/unknown model.
      if (e.code === 'TokenizerError') this.#emitError(e, 'tokenize');
      throw e;
    }
  }

  // ---- vision (§7.12) ------------------------------------------------------------------------

  loadVisionModel(options) {
    return this.#load(options, {
      fallback: 'ModelLoadError', context: 'loadVisionModel', announce: true, vision: true,
    });
  }

  /** Sync; nothing happens until the first next(). Failures are thrown and emit `error`. */
  createVisionGenerator(params, options) {
    const fail = (err) => this.#fail(err, 'GenerationError', 'createVisionGenerator');
    const start = async () => {
      await this.#ensureStarted();
      return this.#nativeEngine();
    };
    return visionGenerator(start, params, options, fail);
  }

  // ---- runtime info & stats (§8) -----------------------------------------------------------

  async getRuntimeInfo() {
    let info;
    try {
      await this.#ensureStarted();
      info = await this.#nativeEngine().runtimeInfo();
    } catch (err) {
      throw this.#fail(err, 'RuntimeError', 'getRuntimeInfo');
    }
    const { rss } = process.memoryUsage();
    return { ...info, protocol: info.protocol ?? 'json-rpc-2.0', memory: { rss, vms: 0 } };
  }

  /** Never rejects and never starts the runtime (§8.4). */
  async healthCheck() {
    try {
      const ne = this.#native;
      if (!ne || !ne.isRunning()) return unhealthy('stopped');
      const activeStreams = ne.activeStreams();
      return {
        status: activeStreams > 10 ? 'degraded' : 'healthy',
        uptime: ne.uptimeMs(),
        activeStreams,
        loadedModels: ne.listModels().length,
        runtime: { pid: process.pid, status: 'running' },
        stateConsistent: true,
      };
    } catch {
      return {
        ...unhealthy('crashed'),
        stateConsistent: false,
        stateErrors: ['Health check failed with exception'],
      };
    }
  }

  async getCacheStats() {
    try {
      await this.#ensureStarted();
      return this.#nativeEngine().cacheStats();
    } catch (err) {
      throw fromNative(err, 'RuntimeError');
    }
  }

  /** No request-batching layer: continuous batching is internal to the engine thread (§8.7). */
  /** Sync (§8.7); `generation` reports continuous batching (§15). */
  getBatchStats() {
    try {
      return this.#nativeEngine().batchStats();
    } catch {
      return undefined;
    }
  }

  resetBatchStats() {
    try {
      this.#nativeEngine().resetBatchStats();
    } catch {
      // nothing to reset when the addon cannot load
    }
  }

  async flushBatches() {}

  /** No disk artifact cache (§8.8): the empty, healthy shape. */
  async getArtifactCacheHealth() {
    return { ...CACHE_HEALTH_EMPTY, corruptedEntries: [] };
  }
}

module.exports = { Engine, kStart, ALIASES };
