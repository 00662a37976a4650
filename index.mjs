// Package root (ES modules). The implementation is the CommonJS facade, loaded once, so
// `instanceof EngineClientError` holds whether a caller used import or require.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const api = require('./index.js');

export default api;
export const {
  Engine,
  createEngine,
  withEngine,
  ENGINE_API_SNAPSHOT_VERSION,
  MLXEngine,
  createMLXEngine,
  EngineClientError,
  TimeoutError,
  createTimeoutError,
  generateText,
  generateTextStreaming,
  ensureModelLoaded,
  batchTokenize,
  collectChunks,
  waitForModelReady,
  isEngineHealthy,
  getTotalTokenCount,
  retryLoadModel,
  load_model,
  create_generator,
  tokenize,
  generate,
  unload_model,
  shutdown,
  getEngine,
  validateLoadModelOptions,
  validateGeneratorParams,
  validateTokenizeRequest,
  assertValidLoadModelOptions,
  assertValidGeneratorParams,
  assertValidTokenizeRequest,
  sanitizeModelId,
  isValidModelIdFormat,
  clamp,
  normalizeTemperature,
  normalizeTopP,
  GenerationStatsCollector,
  createTelemetryBridge,
  getMetrics,
  TelemetryManager,
  PriorityLevel,
} = api;
