'use strict';
// §2.8 telemetry exports (EXT). No OpenTelemetry exporter is bundled: the manager is an
// in-memory counter set whose hooks fit `TelemetryHooks`, so `{telemetry: {enabled, hooks}}`
// wiring written for the original keeps working.

class TelemetryManager {
  #started = false;

  constructor(config = {}) {
    this.config = { ...config };
    this.metrics = {
      modelsLoaded: 0, tokensGenerated: 0, generationsCompleted: 0, errors: 0,
      totalGenerationTime: 0,
    };
  }

  async start() {
    this.#started = true;
  }

  async shutdown() {
    this.#started = false;
  }

  isStarted() {
    return this.#started;
  }
}

function createTelemetryBridge(config = {}, logger) {
  void logger;
  const manager = new TelemetryManager(config);
  const enabled = config.enabled === true;
  const m = manager.metrics;
  const hooks = enabled ? {
    onModelLoaded: () => { m.modelsLoaded += 1; },
    onTokenGenerated: () => { m.tokensGenerated += 1; },
    onGenerationCompleted: (stats) => {
      m.generationsCompleted += 1;
      m.totalGenerationTime += (stats && stats.totalTime) || 0;
    },
    onError: () => { m.errors += 1; },
  } : {};
  return { hooks, manager };
}

function getMetrics(manager) {
  return manager.metrics;
}

/** Scheduling priority enum (runtime export of the original; scheduling hint only). */
const PriorityLevel = Object.freeze({
  CRITICAL: 0, HIGH: 1, NORMAL: 2, LOW: 3, BACKGROUND: 4,
  0: 'CRITICAL', 1: 'HIGH', 2: 'NORMAL', 3: 'LOW', 4: 'BACKGROUND',
});

module.exports = { TelemetryManager, createTelemetryBridge, getMetrics, PriorityLevel };
