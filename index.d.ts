// Type declarations for mlx-serving (hand-written; shapes follow the original
// @defai.digital/mlx-serving@1.2.1 types — see the spec sections named in the comments).

import EventEmitter from 'eventemitter3';

// ---------------------------------------------------------------------------------------------
// Errors (§10)
// ---------------------------------------------------------------------------------------------

export type EngineErrorCode =
  | 'ParseError' | 'InvalidRequest' | 'MethodNotFound' | 'InvalidParams' | 'ValidationError'
  | 'InternalError' | 'ServerError' | 'ModelLoadError' | 'GenerationError' | 'TokenizerError'
  | 'GuidanceError' | 'ModelNotLoaded' | 'RuntimeError' | 'TransportError' | 'Timeout'
  | 'Cancelled' | 'UnknownError';

/** Plain error object (chunks, events, `toObject()`); `code` optional as in the original. */
export interface EngineError {
  code?: string;
  message: string;
  details?: Record<string, unknown>;
}

export declare class EngineClientError extends Error {
  name: string;
  readonly code: EngineErrorCode;
  readonly details?: Record<string, unknown>;
  /** Additive: whether retrying the same call can succeed (set on errors from the engine). */
  readonly retryable?: boolean;
  constructor(code: EngineErrorCode, message: string, details?: Record<string, unknown>);
  toObject(): EngineError & { code: EngineErrorCode };
}

export declare class TimeoutError extends EngineClientError {
  readonly method: string;
  readonly timeout: number;
  readonly requestId?: string;
  readonly duration?: number;
  constructor(method: string, timeout: number, requestId?: string, duration?: number);
  /** The original's form (`api/errors.ts`). */
  constructor(message: string, details: { method: string; timeout: number; requestId?: string; duration?: number });
}

export declare function createTimeoutError(
  method: string, timeout: number, requestId?: string, duration?: number,
): TimeoutError;

// ---------------------------------------------------------------------------------------------
// Models (§5.2, §8.1)
// ---------------------------------------------------------------------------------------------

export type QuantizationMode = 'none' | 'int8' | 'int4';
export type ModelState = 'loading' | 'ready' | 'failed';

export interface TokenizerConfig {
  type: string;
  vocabSize: number;
  specialTokens?: Record<string, number>;
}

export interface ModelDescriptor {
  id: string;
  variant?: string;
  source: 'huggingface' | 'local';
  path?: string;
  tokenizer?: TokenizerConfig;
  modality: 'text' | 'vision' | 'multimodal';
  family: 'mlx-lm' | 'mlx-vlm';
}

/** A model id (as in the original: a plain string). */
export type ModelIdentifier = string;

/** Progress reported while loading (additive, §15). */
export interface ModelLoadProgress {
  phase: 'download' | 'convert' | 'load';
  loadedBytes?: number;
  totalBytes?: number;
  file?: string;
}

export interface LoadModelOptions {
  model: string | ModelDescriptor;
  draft?: boolean;
  revision?: string;
  quantization?: QuantizationMode;
  parameters?: Partial<GeneratorParams>;
  trustRemoteCode?: boolean;
  localPath?: string;
  onProgress?: (progress: ModelLoadProgress) => void;
  /**
   * EXT: the weights' compute form. `'auto'` (default): on the CPU backend f16/bf16 weights are
   * converted to float32 and MLX-quantized layers are dequantized to float32 at load (fast with
   * the optimized BLAS; costs memory, see `metadata.memoryUsage`); on GPU backends weights stay
   * as stored. `'float32'` always converts; `'as-stored'` never does.
   */
  computeDtype?: ComputeDtype;
  [key: string]: unknown;
}

/** EXT: see `LoadModelOptions.computeDtype`. */
export type ComputeDtype = 'auto' | 'float32' | 'as-stored';

export interface SnakeCaseLoadModelOptions {
  model?: string | ModelDescriptor;
  model_id?: string;
  local_path?: string;
  draft?: boolean;
  revision?: string;
  quantization?: QuantizationMode;
  parameters?: Record<string, unknown>;
  params?: Record<string, unknown>;
  trust_remote_code?: boolean;
  /** EXT: see `LoadModelOptions.computeDtype`. */
  compute_dtype?: ComputeDtype;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  [key: string]: unknown;
}

export interface ModelHandle {
  descriptor: ModelDescriptor;
  state: ModelState;
  contextLength: number;
  /**
   * Includes `parameterCount`, `dtype` (the compute dtype), `quantization` and, EXT,
   * `storedDtype` (dtype in the model folder), `memoryUsage` (bytes of weights in memory) and
   * `dequantized` (quantized layers expanded to float32 at load, CPU backend).
   */
  metadata: Record<string, unknown>;
  draft?: boolean;
}

export interface CompatibilityReport {
  compatible: boolean;
  errors: string[];
  warnings: string[];
  details: {
    primaryModel: { id: string; vocabSize: number | null; parameterCount: number; architecture: string };
    draftModel: { id: string; vocabSize: number | null; parameterCount: number; architecture: string };
    performanceEstimate: { expectedSpeedup: string; sizeRatio: string; recommendation: string };
  };
}

// ---------------------------------------------------------------------------------------------
// Generation (§5.1, §7)
// ---------------------------------------------------------------------------------------------

export interface PromptTemplate {
  template: string;
  /** Numbers and booleans are also accepted at run time (stringified, §7.5). */
  variables: Record<string, string>;
}

/** Chat prompt rendered with the model's own chat template (additive, §15). */
export interface ChatPrompt {
  messages: Array<{ role: 'system' | 'user' | 'assistant' | 'tool'; content: string }>;
  addGenerationPrompt?: boolean;
}

export interface StructuredOutputConfig {
  schema: Record<string, unknown>;
  format: 'json' | 'yaml';
}

export interface VisionPromptConfig {
  images: string[];
  imageFormat?: 'base64' | 'url' | 'path';
}

export interface GeneratorParams {
  model: string;
  prompt: string | PromptTemplate | { tokens: number[] } | ChatPrompt;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  repetitionPenalty?: number;
  stopSequences?: string[];
  stopTokenIds?: number[];
  seed?: number;
  streaming?: boolean;
  structured?: StructuredOutputConfig;
  multimodal?: VisionPromptConfig;
  draftModel?: string;
  numDraftTokens?: number;
  promptTokens?: number[];
  [key: string]: unknown;
}

export interface SnakeCaseGeneratorParams {
  model?: string;
  model_id?: string;
  prompt: GeneratorParams['prompt'];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  stop_sequences?: string[];
  stop_token_ids?: number[];
  seed?: number;
  stream?: boolean;
  structured?: StructuredOutputConfig;
  multimodal?: VisionPromptConfig;
  draft_model?: string;
  num_draft_tokens?: number;
  prompt_tokens?: number[];
  [key: string]: unknown;
}

export interface CreateGeneratorOptions {
  streamId?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  priority?: 'urgent' | 'default' | 'background';
}

export interface GenerationStats {
  tokensGenerated: number;
  tokensPerSecond: number;
  timeToFirstToken: number;
  /** Always set by this engine; optional in the original type. */
  totalTime?: number;
  modelId?: string;
  draftTokensAccepted?: number;
  draftTokensProposed?: number;
  acceptanceRate?: number;
  finishReason?: 'stop' | 'eos' | 'length' | 'cancelled';
}

export type GeneratorChunk =
  | {
    type: 'token';
    token: string;
    tokenId?: number;
    logprob?: number;
    isFinal?: boolean;
    cumulativeText?: string;
  }
  | { type: 'metadata'; stats: GenerationStats }
  | { type: 'error'; error: EngineError };

// ---------------------------------------------------------------------------------------------
// Tokenization (§5.3, §8.2)
// ---------------------------------------------------------------------------------------------

export interface TokenizeRequest {
  model: string;
  text: string;
  addBos?: boolean;
  [key: string]: unknown;
}

export interface SnakeCaseTokenizeRequest {
  model?: string;
  model_id?: string;
  text: string;
  add_bos?: boolean;
  add_special_tokens?: boolean;
  [key: string]: unknown;
}

export interface TokenizeResponse {
  tokens: number[];
  tokenStrings?: string[];
}

// ---------------------------------------------------------------------------------------------
// Runtime, health, caches (§8.3–§8.8)
// ---------------------------------------------------------------------------------------------

export interface RuntimeInfo {
  version: string;
  mlxVersion: string;
  protocol: string;
  capabilities: string[];
  mlxSupported?: boolean;
  memory?: { rss: number; vms: number };
  /**
   * `blas`: the library serving MLX's CPU matmuls, e.g. `'openblas (libopenblas.so.0)'` or
   * `'reference (libblas-….so.3.10.0)'` (unoptimized: a warning is logged once). EXT
   * `blasThreads`: OpenBLAS's thread count. `blasRowsAsGemv`: MLX's products with few rows (the
   * decode step's) run as per-row GEMV in front of that BLAS. `smallGemm`: products of up to 16
   * rows (weights, attention) run on the engine's own AVX2/FMA kernel instead.
   */
  backend?: { device: 'metal' | 'cuda' | 'cpu'; mlxVersion: string; blas?: string; blasThreads?: number; blasRowsAsGemv?: boolean; smallGemm?: boolean };
}

export interface HealthStatus {
  status: 'healthy' | 'degraded' | 'unhealthy';
  uptime: number;
  activeStreams: number;
  loadedModels: number;
  runtime?: { pid?: number; status: 'running' | 'stopped' | 'crashed' };
  stateConsistent?: boolean;
  stateErrors?: string[];
}

export interface ModelCacheStats {
  loadedModels: number;
  maxModels: number;
  cacheEnabled: boolean;
  models: Array<{ modelId: string; lastAccess: number }>;
  promptCache?: { entries: number; bytes: number; hits: number; misses: number; evictions: number };
}

export interface BatchPerformanceStats {
  avgBatchTime: number;
  p50BatchTime: number;
  p95BatchTime: number;
  p99BatchTime: number;
  avgBatchSize: number;
  avgQueueLatency: number;
  p95QueueLatency: number;
  samplesRecorded: number;
}

export interface BatchStats {
  tokenizeBatches: number;
  tokenizeRequests: number;
  checkDraftBatches: number;
  checkDraftRequests: number;
  tokenizeQueueSize: number;
  checkDraftQueueSize: number;
  tokenizeEfficiency: number;
  checkDraftEfficiency: number;
  tokenizeFallbacks: number;
  checkDraftFallbacks: number;
  currentMaxBatchSize: number;
  initialMaxBatchSize: number;
  adaptiveSizingEnabled: boolean;
  tokenizePerformance: BatchPerformanceStats;
  checkDraftPerformance: BatchPerformanceStats;
  generation?: { steps: number; avgBatchSize: number; maxBatchSize: number; queued: number };
}

export type EvictionPolicy = 'lru' | 'lfu' | 'fifo';

export interface CacheConfig {
  enabled: boolean;
  cacheDir: string;
  maxSizeBytes: number;
  maxAgeDays: number;
  evictionPolicy: EvictionPolicy;
  preloadModels: string[];
  enableCompression: boolean;
  validateOnStartup: boolean;
}

export interface CacheHealth {
  healthy: boolean;
  sizeBytes: number;
  entryCount: number;
  hitRate: number;
  nearLimit: boolean;
  corruptedEntries: string[];
  lastValidated?: string;
}

export interface CacheEntryMetadata {
  modelId: string;
  revision?: string;
  quantization?: QuantizationMode;
  sizeBytes: number;
  files: string[];
  createdAt: number;
  lastAccessedAt: number;
  accessCount: number;
  [key: string]: unknown;
}

export interface CacheEntry {
  key: string;
  path: string;
  metadata: CacheEntryMetadata;
}

export interface CacheIndex {
  version: number;
  entries: Record<string, CacheEntry>;
  totalSizeBytes: number;
  lastUpdated: number;
}

export interface CacheStats {
  totalEntries: number;
  totalSizeBytes: number;
  hits: number;
  misses: number;
  evictions: number;
  hitRate: number;
}

export interface CacheLookupResult {
  hit: boolean;
  entry?: CacheEntry;
  path?: string;
}

export interface CacheStoreResult {
  success: boolean;
  entry?: CacheEntry;
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// Vision (§7.12, EXT — Qwen2-VL, Qwen2.5-VL and LLaVA model folders)
// ---------------------------------------------------------------------------------------------

export type VisionModelFamily = 'llava' | 'qwen-vl' | 'qwen2-vl' | 'qwen2.5-vl' | 'phi3-vision' | 'idefics' | string;

export interface VisionModelCapabilities {
  maxImageSize: number;
  supportedFormats: string[];
  maxImagesPerRequest: number;
}

export interface VisionModelDescriptor extends ModelDescriptor {
  modality: 'vision';
  family: 'mlx-vlm';
  imageEncoder: string;
  maxImageSize: number;
  imagePreprocessing?: Record<string, unknown>;
}

export interface VisionModelHandle extends ModelHandle {
  descriptor: VisionModelDescriptor;
}

export interface ImageInput {
  source: string | Buffer;
  format?: 'png' | 'jpg' | 'jpeg' | 'webp';
}

export interface ImageEmbedding {
  embedding: number[];
  shape: number[];
}

export interface LoadVisionModelOptions {
  model: string;
  revision?: string;
  quantization?: { bits: 4 | 8; groupSize?: number };
  preprocessing?: Record<string, unknown>;
  config?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface VisionGeneratorParams {
  model: string;
  prompt: string;
  image: ImageInput | ImageInput[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  [key: string]: unknown;
}

export type VisionGeneratorChunk =
  | {
    type: 'token';
    token: string;
    logprob?: number;
    /** Always set by this engine (as on text chunks); not in the original type. */
    tokenId?: number;
    /** Always set by this engine: true on the stream's last token. */
    isFinal?: boolean;
  }
  | {
    type: 'metadata';
    stats: {
      tokensGenerated: number;
      tokensPerSecond: number;
      timeToFirstToken: number;
      totalTime: number;
      /** Always set by this engine; not in the original type. */
      modelId?: string;
      finishReason?: GenerationStats['finishReason'];
    };
  };

// ---------------------------------------------------------------------------------------------
// Events (§9)
// ---------------------------------------------------------------------------------------------

export interface ModelLoadedEvent { modelId: string; handle: ModelHandle; timestamp: number }
export interface ModelUnloadedEvent { modelId: string; timestamp: number }
export interface ModelInvalidatedEvent {
  modelId: string;
  reason: 'python_restart' | 'unload' | 'error';
  timestamp: number;
}
export interface GenerationStartedEvent { streamId: string; modelId: string; prompt: string; timestamp: number }
export interface TokenGeneratedEvent { streamId: string; token: string; logprob?: number; timestamp: number }
export interface GenerationCompletedEvent { streamId: string; stats: GenerationStats; timestamp: number }
export interface ErrorEvent { error: EngineError; context?: string; timestamp: number }
export interface RuntimeStatusEvent {
  status: 'starting' | 'ready' | 'error' | 'stopped';
  previousStatus?: string;
  timestamp: number;
}
export interface ModelProgressEvent extends ModelLoadProgress { modelId?: string }

export interface EngineEvents {
  'model:loaded': (event: ModelLoadedEvent) => void;
  'model:unloaded': (event: ModelUnloadedEvent) => void;
  'model:invalidated': (event: ModelInvalidatedEvent) => void;
  'model:progress': (event: ModelProgressEvent) => void;
  'generation:started': (event: GenerationStartedEvent) => void;
  'generation:token': (event: TokenGeneratedEvent) => void;
  'generation:completed': (event: GenerationCompletedEvent) => void;
  error: (event: ErrorEvent) => void;
  'runtime:status': (event: RuntimeStatusEvent) => void;
}

export type EngineEventName = keyof EngineEvents;
export type EngineEventHandler<E extends EngineEventName> = EngineEvents[E];

// ---------------------------------------------------------------------------------------------
// Engine options & telemetry (§9.3, §11)
// ---------------------------------------------------------------------------------------------

export interface TelemetryHooks {
  onModelLoaded?: (model: ModelHandle) => void;
  onTokenGenerated?: (token: string, stats: GenerationStats) => void;
  onGenerationCompleted?: (stats: GenerationStats) => void;
  onError?: (error: EngineError) => void;
}

export interface TelemetryOptions {
  enabled: boolean;
  hooks?: TelemetryHooks;
}

export interface EngineOptions {
  /** Accepted for compatibility; ignored (no Python runtime). */
  pythonPath?: string;
  /** Accepted for compatibility; ignored (no Python runtime). */
  runtimePath?: string;
  /** @deprecated use `cache.cacheDir`. */
  cacheDir?: string;
  cache?: Partial<CacheConfig>;
  telemetry?: TelemetryOptions;
  /**
   * EXT: Hugging Face hub settings for this engine; each overrides its environment variable
   * (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`).
   */
  hub?: HubOptions;
  [key: string]: unknown;
}

/** EXT: see `EngineOptions.hub`. `cacheDir` is the hub cache folder itself (what `HF_HUB_CACHE` names). */
export interface HubOptions {
  endpoint?: string;
  cacheDir?: string;
  token?: string;
  offline?: boolean;
}

export interface RuntimeConfig {
  [section: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Engine (§3, §4)
// ---------------------------------------------------------------------------------------------

/** The 35 members of the original contract-test key snapshot (plus the event emitter). */
export interface EnginePublicAPI extends EventEmitter<EngineEvents> {
  loadModel(options: LoadModelOptions | string): Promise<ModelHandle>;
  load_model(options: LoadModelOptions | SnakeCaseLoadModelOptions | Record<string, unknown> | string): Promise<ModelHandle>;
  loadDraftModel(options: LoadModelOptions | string): Promise<ModelHandle>;
  load_draft_model(options: LoadModelOptions | SnakeCaseLoadModelOptions | Record<string, unknown> | string): Promise<ModelHandle>;
  unloadModel(id: string): Promise<void>;
  unload_model(id: string): Promise<void>;
  unloadDraftModel(id?: string): Promise<void>;
  unload_draft_model(id?: string): Promise<void>;
  isDraftModelCompatible(primaryId: string, draftId: string): Promise<CompatibilityReport>;
  is_draft_model_compatible(primaryId: string, draftId: string): Promise<CompatibilityReport>;
  createGenerator(
    params: GeneratorParams | SnakeCaseGeneratorParams,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<GeneratorChunk, void>;
  create_generator(
    params: GeneratorParams | SnakeCaseGeneratorParams | Record<string, unknown>,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<GeneratorChunk, void>;
  generate(params: GeneratorParams | SnakeCaseGeneratorParams, options?: CreateGeneratorOptions): Promise<string>;
  tokenize(request: TokenizeRequest | SnakeCaseTokenizeRequest): Promise<TokenizeResponse>;
  listModels(): ModelHandle[];
  list_models(): ModelHandle[];
  getModelInfo(id: string): ModelHandle | undefined;
  get_model_info(id: string): ModelHandle | undefined;
  getRuntimeInfo(): Promise<RuntimeInfo>;
  get_runtime_info(): Promise<RuntimeInfo>;
  healthCheck(): Promise<HealthStatus>;
  health_check(): Promise<HealthStatus>;
  shutdown(): Promise<void>;
  dispose(): Promise<void>;
  getBatchStats(): BatchStats | undefined;
  resetBatchStats(): void;
  flushBatches(): Promise<void>;
  warmupModel(options: LoadModelOptions | string): Promise<void>;
  warmup_model(options: LoadModelOptions | SnakeCaseLoadModelOptions | Record<string, unknown> | string): Promise<void>;
  getCacheStats(): Promise<ModelCacheStats>;
  get_cache_stats(): Promise<ModelCacheStats>;
  loadVisionModel(options: LoadVisionModelOptions): Promise<VisionModelHandle>;
  load_vision_model(options: LoadVisionModelOptions): Promise<VisionModelHandle>;
  createVisionGenerator(
    params: VisionGeneratorParams,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<VisionGeneratorChunk, void>;
  create_vision_generator(
    params: VisionGeneratorParams,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<VisionGeneratorChunk, void>;
}

export declare class Engine extends EventEmitter<EngineEvents> implements EnginePublicAPI {
  constructor(options?: EngineOptions, deps?: { logger?: unknown; runner?: unknown });
  loadModel(options: LoadModelOptions | string): Promise<ModelHandle>;
  load_model: EnginePublicAPI['load_model'];
  loadDraftModel(options: LoadModelOptions | string): Promise<ModelHandle>;
  load_draft_model: EnginePublicAPI['load_draft_model'];
  unloadModel(id: string): Promise<void>;
  unload_model: EnginePublicAPI['unload_model'];
  unloadDraftModel(id?: string): Promise<void>;
  unload_draft_model: EnginePublicAPI['unload_draft_model'];
  isDraftModelCompatible(primaryId: string, draftId: string): Promise<CompatibilityReport>;
  is_draft_model_compatible: EnginePublicAPI['is_draft_model_compatible'];
  createGenerator(
    params: GeneratorParams | SnakeCaseGeneratorParams,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<GeneratorChunk, void>;
  create_generator: EnginePublicAPI['create_generator'];
  generate(params: GeneratorParams | SnakeCaseGeneratorParams, options?: CreateGeneratorOptions): Promise<string>;
  tokenize(request: TokenizeRequest | SnakeCaseTokenizeRequest): Promise<TokenizeResponse>;
  listModels(): ModelHandle[];
  list_models: EnginePublicAPI['list_models'];
  getModelInfo(id: string): ModelHandle | undefined;
  get_model_info: EnginePublicAPI['get_model_info'];
  getRuntimeInfo(): Promise<RuntimeInfo>;
  get_runtime_info: EnginePublicAPI['get_runtime_info'];
  healthCheck(): Promise<HealthStatus>;
  health_check: EnginePublicAPI['health_check'];
  shutdown(): Promise<void>;
  dispose(): Promise<void>;
  getBatchStats(): BatchStats | undefined;
  resetBatchStats(): void;
  flushBatches(): Promise<void>;
  warmupModel(options: LoadModelOptions | string): Promise<void>;
  warmup_model: EnginePublicAPI['warmup_model'];
  getCacheStats(): Promise<ModelCacheStats>;
  get_cache_stats: EnginePublicAPI['get_cache_stats'];
  loadVisionModel(options: LoadVisionModelOptions): Promise<VisionModelHandle>;
  load_vision_model: EnginePublicAPI['load_vision_model'];
  createVisionGenerator(
    params: VisionGeneratorParams,
    options?: CreateGeneratorOptions,
  ): AsyncGenerator<VisionGeneratorChunk, void>;
  create_vision_generator: EnginePublicAPI['create_vision_generator'];
  getArtifactCacheHealth(): Promise<CacheHealth>;
}

export declare const ENGINE_API_SNAPSHOT_VERSION: 'phase-0';
export declare function createEngine(options?: EngineOptions): Promise<Engine>;
export declare function withEngine<T>(callback: (engine: Engine) => Promise<T> | T, options?: EngineOptions): Promise<T>;

// ---------------------------------------------------------------------------------------------
// MLXEngine (§12.1)
// ---------------------------------------------------------------------------------------------

export declare class MLXEngine {
  constructor(model: string | LoadModelOptions);
  init(): Promise<this>;
  generate(prompt: GeneratorParams['prompt'], params?: Partial<GeneratorParams> | Partial<SnakeCaseGeneratorParams>): Promise<string>;
  generateStream(
    prompt: GeneratorParams['prompt'],
    params?: Partial<GeneratorParams> | Partial<SnakeCaseGeneratorParams>,
  ): AsyncGenerator<GeneratorChunk, void>;
  tokenize(text: string): Promise<number[]>;
  getModelHandle(): ModelHandle | null;
  getEngine(): Engine | null;
  isInitialized(): boolean;
  dispose(): Promise<void>;
}
export declare function createMLXEngine(modelOrOptions: string | LoadModelOptions): Promise<MLXEngine>;

// ---------------------------------------------------------------------------------------------
// Helpers (§2.3) and module-level helpers (§2.4)
// ---------------------------------------------------------------------------------------------

export declare function generateText(engine: Engine, params: GeneratorParams): Promise<string>;
export declare function generateTextStreaming(
  engine: Engine, params: GeneratorParams, onToken: (token: string) => void,
): Promise<string>;
export declare function ensureModelLoaded(engine: Engine, options: LoadModelOptions | string): Promise<ModelHandle>;
export declare function batchTokenize(engine: Engine, model: string, texts: string[]): Promise<number[][]>;
export declare function collectChunks(engine: Engine, params: GeneratorParams): Promise<GeneratorChunk[]>;
export declare function waitForModelReady(
  engine: Engine, modelId: string, timeoutMs?: number, pollIntervalMs?: number,
): Promise<ModelHandle>;
export declare function isEngineHealthy(engine: Engine): Promise<boolean>;
export declare function getTotalTokenCount(engine: Engine, model: string, texts: string[]): Promise<number>;
export declare function retryLoadModel(
  engine: Engine, options: LoadModelOptions | string, maxRetries?: number, initialDelayMs?: number,
): Promise<ModelHandle>;

export declare function load_model(
  model: string | LoadModelOptions | SnakeCaseLoadModelOptions, extra?: Record<string, unknown>,
): Promise<ModelHandle>;
export declare function create_generator(
  modelKit: ModelHandle, prompt: string | number[], params?: Record<string, unknown>,
): AsyncGenerator<GeneratorChunk, void>;
export declare function tokenize(
  modelKit: ModelHandle, text: string, options?: { add_bos?: boolean },
): Promise<TokenizeResponse>;
export declare function generate(
  modelKit: ModelHandle, prompt: string | number[], params?: Record<string, unknown>,
): Promise<string>;
export declare function unload_model(modelKit: ModelHandle): Promise<void>;
export declare function shutdown(): Promise<void>;
export declare function getEngine(): Engine | null;

// ---------------------------------------------------------------------------------------------
// Validators (§2.5)
// ---------------------------------------------------------------------------------------------

export interface ValidationResult {
  valid: boolean;
  errors: string[];
}

export declare function validateLoadModelOptions(options: unknown): ValidationResult;
export declare function validateGeneratorParams(params: unknown): ValidationResult;
export declare function validateTokenizeRequest(request: unknown): ValidationResult;
export declare function assertValidLoadModelOptions(options: unknown): asserts options is LoadModelOptions;
export declare function assertValidGeneratorParams(params: unknown): asserts params is GeneratorParams;
export declare function assertValidTokenizeRequest(request: unknown): asserts request is TokenizeRequest;
export declare function sanitizeModelId(id: string): string;
export declare function isValidModelIdFormat(id: string): boolean;
export declare function clamp(value: number, min: number, max: number): number;
export declare function normalizeTemperature(temperature?: number): number | undefined;
export declare function normalizeTopP(topP?: number): number | undefined;

// ---------------------------------------------------------------------------------------------
// Stats collector (§12.3), telemetry (§2.8), priority enum (§2.7)
// ---------------------------------------------------------------------------------------------

export interface StatsCollectorOptions {
  autoStart?: boolean;
}

export declare class GenerationStatsCollector {
  constructor(options?: StatsCollectorOptions);
  start(): void;
  update(token: string): void;
  stop(): void;
  reset(): void;
  getStats(): GenerationStats;
  readonly tokensPerSecond: number;
  readonly timeToFirstToken: number;
  readonly totalTime: number;
  readonly tokensGenerated: number;
  readonly isStarted: boolean;
  readonly hasTokens: boolean;
}

export interface TelemetryConfig {
  enabled?: boolean;
  serviceName?: string;
  prometheusPort?: number;
  exportIntervalMs?: number;
  [key: string]: unknown;
}

export interface MlxServingMetrics {
  modelsLoaded: number;
  tokensGenerated: number;
  generationsCompleted: number;
  errors: number;
  totalGenerationTime: number;
}

export declare class TelemetryManager {
  constructor(config?: TelemetryConfig);
  readonly config: TelemetryConfig;
  readonly metrics: MlxServingMetrics;
  start(): Promise<void>;
  shutdown(): Promise<void>;
  isStarted(): boolean;
}

export declare function createTelemetryBridge(
  config: TelemetryConfig, logger?: unknown,
): { hooks: TelemetryHooks; manager: TelemetryManager };
export declare function getMetrics(manager: TelemetryManager): MlxServingMetrics;

export declare enum PriorityLevel {
  CRITICAL = 0,
  HIGH = 1,
  NORMAL = 2,
  LOW = 3,
  BACKGROUND = 4,
}

// INTERNAL registry/scheduling types (declaration-only, kept for type compatibility).
export interface ModelInfo { id: string; [key: string]: unknown }
export interface ModelRegistryStats { [key: string]: unknown }
export type SchedulingPolicy = 'fifo' | 'priority' | 'fair' | string;
export interface QueueStats { [key: string]: unknown }
