// A TypeScript consumer written against the original @defai.digital/mlx-serving@1.2.1 API
// (its src/types, src/api/events.ts, api/contracts/engine-public-api.ts). It is only
// type-checked (`tsc --noEmit -p __test__/types`, run by __test__/types.test.mjs), never executed:
// if the hand-written index.d.ts drifts from the original shapes, this file stops compiling.
import EventEmitter from 'eventemitter3';
import {
  Engine, createEngine, withEngine, MLXEngine, createMLXEngine, EngineClientError,
  TimeoutError, createTimeoutError, ENGINE_API_SNAPSHOT_VERSION, GenerationStatsCollector,
  generateText, generateTextStreaming, ensureModelLoaded, batchTokenize, collectChunks,
  waitForModelReady, isEngineHealthy, getTotalTokenCount, retryLoadModel,
  load_model, create_generator, tokenize, generate, unload_model, shutdown, getEngine,
  validateLoadModelOptions, validateGeneratorParams, validateTokenizeRequest,
  assertValidLoadModelOptions, assertValidGeneratorParams, assertValidTokenizeRequest,
  sanitizeModelId, isValidModelIdFormat, clamp, normalizeTemperature, normalizeTopP,
  createTelemetryBridge, getMetrics, TelemetryManager, PriorityLevel,
} from 'mlx-serving';
import type {
  EngineOptions, TelemetryOptions, TelemetryHooks, LoadModelOptions, QuantizationMode,
  ModelIdentifier, CreateGeneratorOptions, GeneratorParams, PromptTemplate,
  StructuredOutputConfig, VisionPromptConfig, GeneratorChunk, TokenizeRequest, TokenizeResponse,
  GenerationStats, EngineError, ModelDescriptor, TokenizerConfig, ModelState, ModelHandle,
  CompatibilityReport, RuntimeInfo, HealthStatus, ModelCacheStats, EnginePublicAPI, EngineEvents,
  EngineEventName, EngineEventHandler, ModelLoadedEvent, ModelUnloadedEvent,
  ModelInvalidatedEvent, GenerationStartedEvent, TokenGeneratedEvent, GenerationCompletedEvent,
  ErrorEvent, RuntimeStatusEvent, SnakeCaseGeneratorParams, SnakeCaseLoadModelOptions,
  SnakeCaseTokenizeRequest, StatsCollectorOptions, ValidationResult, RuntimeConfig,
  EngineErrorCode, BatchStats, CacheHealth,
  VisionModelDescriptor, VisionModelHandle, ImageInput, VisionGeneratorParams,
  LoadVisionModelOptions, ImageEmbedding, VisionGeneratorChunk, VisionModelFamily,
  VisionModelCapabilities,
  CacheEntry, CacheEntryMetadata, CacheIndex, CacheStats, EvictionPolicy, CacheConfig,
  CacheLookupResult, CacheStoreResult,
  TelemetryConfig, MlxServingMetrics,
} from 'mlx-serving';

// ---- type-level helpers -----------------------------------------------------------------------
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
function assertType<T extends true>(): T | void {}

// The original contract test: Engine's keys == EnginePublicAPI's keys (the original class also
// had the public getArtifactCacheHealth, spec §4), and createEngine resolves to that type.
type EngineKeys = keyof InstanceType<typeof Engine>;
type SnapshotKeys = keyof EnginePublicAPI;
assertType<Equal<Exclude<EngineKeys, SnapshotKeys>, 'getArtifactCacheHealth'>>();
assertType<Equal<Exclude<SnapshotKeys, EngineKeys>, never>>();
const apiOf = async (): Promise<EnginePublicAPI> => createEngine();
const version: 'phase-0' = ENGINE_API_SNAPSHOT_VERSION;
assertType<Equal<EngineEventName, keyof EngineEvents>>();

// ---- options and handles, written the way original callers wrote them -------------------------
const hooks: TelemetryHooks = {
  onModelLoaded: (model: ModelHandle) => void model.descriptor.id,
  onTokenGenerated: (token: string, stats: GenerationStats) => void [token, stats.tokensGenerated],
  onGenerationCompleted: (stats: GenerationStats) => void stats.tokensPerSecond,
  onError: (error: EngineError) => void error.message,
};
const telemetry: TelemetryOptions = { enabled: true, hooks };
const cacheConfig: Partial<CacheConfig> = { enabled: true, maxSizeBytes: 1 << 30, evictionPolicy: 'lru' };
const policy: EvictionPolicy = 'lfu';
const options: EngineOptions = { pythonPath: '/usr/bin/python3', runtimePath: 'x', cacheDir: '/tmp', cache: cacheConfig, telemetry };
const engine = new Engine(options);
const engine2 = new Engine(options, { logger: console, runner: undefined });
const emitter: EventEmitter<EngineEvents> = engine;
const asApi: EnginePublicAPI = engine2;

const quant: QuantizationMode = 'int4';
const id: ModelIdentifier = 'mlx-community/Llama-3.2-3B-Instruct-4bit';
const tokenizerConfig: TokenizerConfig = { type: 'huggingface', vocabSize: 32000, specialTokens: { bos: 1 } };
const descriptor: ModelDescriptor = {
  id, source: 'huggingface', modality: 'text', family: 'mlx-lm', tokenizer: tokenizerConfig,
};
const state: ModelState = 'ready';
const loadOpts: LoadModelOptions = {
  model: descriptor, draft: false, revision: 'main', quantization: quant,
  parameters: { maxTokens: 128, temperature: 0.2 }, trustRemoteCode: false, custom_kwarg: 1,
};
const maxFromDefaults: number | undefined = loadOpts.parameters?.maxTokens;
const snakeLoad: SnakeCaseLoadModelOptions = { model_id: id, local_path: '/models/x', max_tokens: 64 };
const looseLoad: Record<string, unknown> = { model: id, trust_remote_code: true };

const template: PromptTemplate = { template: 'Hi {{ name }}', variables: { name: 'Ada' } };
const structured: StructuredOutputConfig = { schema: { type: 'object' }, format: 'json' };
const multimodal: VisionPromptConfig = { images: ['a.png'], imageFormat: 'path' };
const params: GeneratorParams = {
  model: id, prompt: template, maxTokens: 64, temperature: 0.7, topP: 0.9, presencePenalty: 0,
  frequencyPenalty: 0, repetitionPenalty: 1.1, stopSequences: ['\n\n'], stopTokenIds: [2],
  seed: 42, streaming: true, structured, multimodal, draftModel: 'draft', hints: { a: 1 },
  promptTokens: [1, 2, 3],
};
const tokenPrompt: GeneratorParams = { model: id, prompt: { tokens: [1, 2, 3] } };
const snakeParams: SnakeCaseGeneratorParams = { model_id: id, prompt: 'x', max_tokens: 8, top_p: 1, stream: false };
const looseParams: Record<string, unknown> = { model: id, prompt: 'x', max_tokens: 8 };
const controller = new AbortController();
const genOpts: CreateGeneratorOptions = { signal: controller.signal, streamId: 's-1', timeoutMs: 30_000, priority: 'urgent' };
const tokReq: TokenizeRequest = { model: id, text: 'hello', addBos: true };
const snakeTok: SnakeCaseTokenizeRequest = { model_id: id, text: 'hello', add_bos: false };

// Plain objects built by callers (fakes, telemetry) with the original's optional fields.
const partialStats: GenerationStats = { tokensGenerated: 1, tokensPerSecond: 2, timeToFirstToken: 0.1 };
const bareError: EngineError = { message: 'boom' };
const errChunk: GeneratorChunk = { type: 'error', error: bareError };

async function engineCalls(): Promise<void> {
  const handle: ModelHandle = await engine.loadModel(loadOpts);
  await engine.loadModel('org/model');
  await engine.load_model(snakeLoad);
  await engine.load_model(looseLoad);
  await engine.loadDraftModel({ model: 'draft' });
  await engine.load_draft_model({ model: 'draft', draft: true });
  const report: CompatibilityReport = await engine.isDraftModelCompatible(id, 'draft');
  const speedup: string = report.details.performanceEstimate.expectedSpeedup;
  const vocab: number | null = report.details.draftModel.vocabSize;
  await engine.is_draft_model_compatible(id, 'draft');
  for await (const chunk of engine.createGenerator(params, genOpts)) {
    if (chunk.type === 'token') {
      const text: string = chunk.token;
      const tid: number | undefined = chunk.tokenId;
      const cumulative: string | undefined = chunk.cumulativeText;
      void [text, tid, cumulative, chunk.logprob, chunk.isFinal];
    } else if (chunk.type === 'metadata') {
      const stats: GenerationStats = chunk.stats;
      const total: number | undefined = stats.totalTime;
      void [stats.timeToFirstToken, total, stats.draftTokensAccepted, stats.modelId];
    } else {
      const code: string | undefined = chunk.error.code;
      void [code, chunk.error.message, chunk.error.details];
    }
  }
  const gen: AsyncGenerator<GeneratorChunk, void> = engine.create_generator(snakeParams);
  await gen.return(undefined);
  engine.create_generator(looseParams);
  engine.createGenerator(tokenPrompt);
  const out: string = await engine.generate({ model: id, prompt: 'hi' });
  const tokens: TokenizeResponse = await engine.tokenize(tokReq);
  const strings: string[] | undefined = tokens.tokenStrings;
  await engine.tokenize(snakeTok);
  const models: ModelHandle[] = engine.listModels();
  const snakeModels: ModelHandle[] = engine.list_models();
  const maybe: ModelHandle | undefined = engine.getModelInfo(id) ?? engine.get_model_info(id);
  const info: RuntimeInfo = await engine.getRuntimeInfo();
  const caps: string[] = (await engine.get_runtime_info()).capabilities;
  const health: HealthStatus = await engine.healthCheck();
  const hs: 'healthy' | 'degraded' | 'unhealthy' = (await engine.health_check()).status;
  const batch: BatchStats | undefined = engine.getBatchStats();
  engine.resetBatchStats();
  await engine.flushBatches();
  await engine.warmupModel(id);
  await engine.warmup_model({ model: id });
  const cache: ModelCacheStats = await engine.getCacheStats();
  const lastAccess: number | undefined = (await engine.get_cache_stats()).models[0]?.lastAccess;
  const artifact: CacheHealth = await engine.getArtifactCacheHealth();
  await engine.unloadModel(id);
  await engine.unload_model(handle.descriptor.id);
  await engine.unloadDraftModel();
  await engine.unload_draft_model('draft');
  await engine.shutdown();
  await engine.dispose();
  void [speedup, vocab, out, strings, models, snakeModels, maybe, info, caps, health, hs, batch,
    cache, lastAccess, artifact, state, maxFromDefaults, version, emitter, asApi, policy, apiOf,
    partialStats, errChunk];
}

// ---- events through the eventemitter3 generics -------------------------------------------------
const onLoaded: EngineEventHandler<'model:loaded'> = (e: ModelLoadedEvent) => void e.handle.descriptor.id;
engine.on('model:loaded', onLoaded);
engine.on('model:unloaded', (e: ModelUnloadedEvent) => void e.modelId);
engine.once('model:invalidated', (e: ModelInvalidatedEvent) => void e.reason);
engine.on('generation:started', (e: GenerationStartedEvent) => void e.prompt);
engine.on('generation:token', (e: TokenGeneratedEvent) => void e.token);
engine.on('generation:completed', (e: GenerationCompletedEvent) => void e.stats.tokensGenerated);
engine.addListener('error', (e: ErrorEvent) => void [e.error.code, e.context, e.timestamp]);
engine.on('runtime:status', (e: RuntimeStatusEvent) => void e.previousStatus);
engine.off('model:loaded', onLoaded).removeAllListeners('error');
const names: Array<string | symbol> = engine.eventNames();
const count: number = engine.listenerCount('model:loaded');

// ---- errors ------------------------------------------------------------------------------------
function handleError(err: unknown): string {
  if (err instanceof TimeoutError) return `${err.method} ${err.timeout}`;
  if (err instanceof EngineClientError) {
    const code: EngineErrorCode = err.code;
    const obj: EngineError = err.toObject();
    return `${code} ${obj.message} ${String(err.details?.field)}`;
  }
  return String(err);
}
const timeout: TimeoutError = createTimeoutError('generate', 1000, 'req-1', 5);
const invalid = new EngineClientError('InvalidParams', 'bad', { field: 'maxTokens' });
const originalForm = new TimeoutError('Request timed out', { method: 'generate', timeout: 10, requestId: 'r' });
const rid: string | undefined = originalForm.requestId;

// ---- factories, helpers, module helpers ---------------------------------------------------------
async function helpers(): Promise<void> {
  const e: Engine = await createEngine({ telemetry: { enabled: false } });
  const value: number = await withEngine(async (eng: Engine) => eng.listModels().length);
  const mlx: MLXEngine = await createMLXEngine(id);
  const mlx2: MLXEngine = await new MLXEngine({ model: id }).init();
  const text: string = await mlx.generate('hello', { max_tokens: 8 });
  for await (const c of mlx2.generateStream('hello')) void c;
  const ids: number[] = await mlx.tokenize('x');
  const h: ModelHandle | null = mlx.getModelHandle();
  const inner: Engine | null = mlx.getEngine();
  const ok: boolean = mlx.isInitialized();
  await mlx.dispose();

  const g1: string = await generateText(e, params);
  const g2: string = await generateTextStreaming(e, params, (token: string) => void token);
  const handle: ModelHandle = await ensureModelLoaded(e, loadOpts);
  const batches: number[][] = await batchTokenize(e, id, ['a', 'b']);
  const chunks: GeneratorChunk[] = await collectChunks(e, params);
  await waitForModelReady(e, id, 1000, 10);
  const healthy: boolean = await isEngineHealthy(e);
  const total: number = await getTotalTokenCount(e, id, ['a']);
  await retryLoadModel(e, loadOpts, 3, 100);

  const kit: ModelHandle = await load_model(id, { local_path: '/m' });
  for await (const c of create_generator(kit, [1, 2, 3], { max_tokens: 4 })) void c;
  const t: TokenizeResponse = await tokenize(kit, 'x', { add_bos: true });
  const s: string = await generate(kit, 'x');
  await unload_model(kit);
  await shutdown();
  const global: Engine | null = getEngine();
  void [value, text, ids, h, inner, ok, g1, g2, handle, batches, chunks, healthy, total, t, s, global];
}

// ---- validators, stats, telemetry, enums ---------------------------------------------------------
const v: ValidationResult = validateGeneratorParams(params);
const v2: ValidationResult = validateLoadModelOptions(loadOpts);
const v3: ValidationResult = validateTokenizeRequest(tokReq);
function narrow(input: unknown): string {
  assertValidLoadModelOptions(input);
  const m: string | ModelDescriptor = input.model;
  return typeof m === 'string' ? m : m.id;
}
function narrowParams(input: unknown): string {
  assertValidGeneratorParams(input);
  return input.model;
}
function narrowTok(input: unknown): string {
  assertValidTokenizeRequest(input);
  return input.text;
}
const cleanId: string = sanitizeModelId(' my-model ');
const fmt: boolean = isValidModelIdFormat('a.b-c_d');
const clamped: number = clamp(5, 0, 1);
const temp: number | undefined = normalizeTemperature(3);
const topP: number | undefined = normalizeTopP(undefined);
const collectorOptions: StatsCollectorOptions = { autoStart: false };
const collector = new GenerationStatsCollector(collectorOptions);
collector.update('tok');
const collected: GenerationStats = collector.getStats();
const tps: number = collector.tokensPerSecond;
const tcfg: TelemetryConfig = { enabled: true, serviceName: 'svc' };
const bridge = createTelemetryBridge(tcfg);
const bridgeHooks: TelemetryHooks = bridge.hooks;
const metrics: MlxServingMetrics = getMetrics(bridge.manager);
const manager = new TelemetryManager(tcfg);
const prio: PriorityLevel = PriorityLevel.HIGH;
const prioNum: number = PriorityLevel.BACKGROUND;
const runtimeConfig: RuntimeConfig = { model: { default_max_tokens: 512 } };

// ---- vision and cache types (EXT) ----------------------------------------------------------------
const family: VisionModelFamily = 'llava';
const image: ImageInput = { source: '/tmp/cat.png' };
const visionOpts: LoadVisionModelOptions = { model: 'llava-hf/llava-1.5-7b-hf', revision: 'main' };
const visionParams: VisionGeneratorParams = { model: 'llava', prompt: 'what is this?', image };
async function vision(): Promise<void> {
  const vh: VisionModelHandle = await engine.loadVisionModel(visionOpts);
  const vd: VisionModelDescriptor = vh.descriptor;
  for await (const c of engine.createVisionGenerator(visionParams, genOpts)) {
    const vc: VisionGeneratorChunk = c;
    void vc;
  }
  engine.create_vision_generator(visionParams);
  await engine.load_vision_model(visionOpts);
  void vd;
}
declare const embedding: ImageEmbedding;
declare const capabilities: VisionModelCapabilities;
declare const entry: CacheEntry;
declare const entryMeta: CacheEntryMetadata;
declare const index: CacheIndex;
declare const cacheStats: CacheStats;
declare const lookup: CacheLookupResult;
declare const stored: CacheStoreResult;

export {
  engineCalls, helpers, vision, handleError, narrow, narrowParams, narrowTok, names, count, timeout,
  invalid, originalForm, rid, v, v2, v3, cleanId, fmt, clamped, temp, topP, collected, tps, bridgeHooks, metrics,
  manager, prio, prioNum, runtimeConfig, family, embedding, capabilities, entry, entryMeta, index,
  cacheStats, lookup, stored,
};
