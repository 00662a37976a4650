'use strict';
// Package root (CommonJS). Re-exports the facade; the native addon is only loaded on first use,
// so `require('mlx-serving')` succeeds even before `npm run build` (errors then say how to build).

const errors = require('./js/errors');
const { Engine } = require('./js/engine');
const factories = require('./js/factories');
const helpers = require('./js/helpers');
const validators = require('./js/validators');
const moduleHelpers = require('./js/module-helpers');
const { MLXEngine, createMLXEngine } = require('./js/mlx-engine');
const { GenerationStatsCollector } = require('./js/stats');
const telemetry = require('./js/telemetry');

module.exports = {
  // §2.1 engine & factories
  Engine,
  createEngine: factories.createEngine,
  withEngine: factories.withEngine,
  ENGINE_API_SNAPSHOT_VERSION: factories.ENGINE_API_SNAPSHOT_VERSION,
  MLXEngine,
  createMLXEngine,
  // §2.2 errors
  EngineClientError: errors.EngineClientError,
  TimeoutError: errors.TimeoutError,
  createTimeoutError: errors.createTimeoutError,
  // §2.3 helpers
  ...helpers,
  // §2.4 module-level helpers
  ...moduleHelpers,
  // §2.5 validators
  ...validators,
  // §2.8 other runtime exports
  GenerationStatsCollector,
  createTelemetryBridge: telemetry.createTelemetryBridge,
  getMetrics: telemetry.getMetrics,
  TelemetryManager: telemetry.TelemetryManager,
  PriorityLevel: telemetry.PriorityLevel,
};
