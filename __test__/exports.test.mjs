// Package shape (spec §1, §2, §4, §10.1): the root loads through both `require` and `import`,
// exposes the documented names, and an Engine instance carries exactly the 35 snapshot members.
// None of this needs the native addon: the root must load even before `npm run build`.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import EventEmitter3 from 'eventemitter3';
import * as esm from 'mlx-serving';
import esmDefault from 'mlx-serving';
import { ROOT, require } from './support/env.mjs';

const cjs = require('mlx-serving');

const CAMEL = [
  'loadModel', 'loadDraftModel', 'unloadModel', 'unloadDraftModel', 'isDraftModelCompatible',
  'createGenerator', 'generate', 'tokenize', 'listModels', 'getModelInfo', 'getRuntimeInfo',
  'healthCheck', 'shutdown', 'dispose', 'getBatchStats', 'resetBatchStats', 'flushBatches',
  'warmupModel', 'getCacheStats', 'loadVisionModel', 'createVisionGenerator',
];
const SNAKE = [
  'load_model', 'load_draft_model', 'unload_model', 'unload_draft_model',
  'is_draft_model_compatible', 'create_generator', 'list_models', 'get_model_info',
  'get_runtime_info', 'health_check', 'warmup_model', 'get_cache_stats', 'load_vision_model',
  'create_vision_generator',
];
const SNAPSHOT = [...CAMEL, ...SNAKE];

const ROOT_RUNTIME_EXPORTS = [
  'Engine', 'createEngine', 'withEngine', 'ENGINE_API_SNAPSHOT_VERSION', 'MLXEngine',
  'createMLXEngine', 'EngineClientError', 'TimeoutError', 'createTimeoutError',
  'generateText', 'generateTextStreaming', 'ensureModelLoaded', 'batchTokenize', 'collectChunks',
  'waitForModelReady', 'isEngineHealthy', 'getTotalTokenCount', 'retryLoadModel',
  'load_model', 'create_generator', 'tokenize', 'generate', 'unload_model', 'shutdown',
  'getEngine', 'validateLoadModelOptions', 'validateGeneratorParams', 'validateTokenizeRequest',
  'assertValidLoadModelOptions', 'assertValidGeneratorParams', 'assertValidTokenizeRequest',
  'sanitizeModelId', 'isValidModelIdFormat', 'clamp', 'normalizeTemperature', 'normalizeTopP',
  'GenerationStatsCollector', 'createTelemetryBridge', 'getMetrics', 'TelemetryManager',
  'PriorityLevel',
];

describe('package root', () => {
  it('resolves require() to index.js and import to index.mjs via package.json exports', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.name).toBe('mlx-serving');
    expect(pkg.main).toBe('index.js');
    expect(pkg.types).toBe('index.d.ts');
    expect(require.resolve('mlx-serving')).toBe(path.join(ROOT, 'index.js'));
    expect(pkg.engines.node).toBe('>=20');
  });

  it.each(ROOT_RUNTIME_EXPORTS)('exports %s through require and import (same object)', (name) => {
    expect(cjs[name]).toBeDefined();
    expect(esm[name]).toBe(cjs[name]);
    expect(esmDefault[name]).toBe(cjs[name]);
  });

  it('index.mjs re-exports every CommonJS export by name (and nothing else)', () => {
    const named = Object.keys(esm).filter((k) => k !== 'default').sort();
    expect(named).toEqual(Object.keys(cjs).sort());
    expect(Object.keys(cjs).sort()).toEqual([...ROOT_RUNTIME_EXPORTS].sort());
  });

  it('ENGINE_API_SNAPSHOT_VERSION is phase-0', () => {
    expect(cjs.ENGINE_API_SNAPSHOT_VERSION).toBe('phase-0');
  });

  it('PriorityLevel has the original numeric values', () => {
    expect(cjs.PriorityLevel).toMatchObject({
      CRITICAL: 0, HIGH: 1, NORMAL: 2, LOW: 3, BACKGROUND: 4,
    });
  });
});

describe('Engine instance shape (snapshot of EnginePublicAPI)', () => {
  const engine = new cjs.Engine({ pythonPath: '/nonexistent/python', someUnknownKey: 1 },
    { runner: {}, logger: console });

  it('is constructible without I/O and extends eventemitter3', () => {
    expect(engine).toBeInstanceOf(EventEmitter3);
    expect(typeof engine.on).toBe('function');
    expect(engine.on('model:loaded', () => {})).toBe(engine);
    engine.removeAllListeners();
  });

  it('has exactly the 35 snapshot members (plus getArtifactCacheHealth)', () => {
    expect(SNAPSHOT).toHaveLength(35);
    for (const name of SNAPSHOT) expect(typeof engine[name], name).toBe('function');
    expect(typeof engine.getArtifactCacheHealth).toBe('function');
    const protoMethods = Object.getOwnPropertyNames(cjs.Engine.prototype)
      .filter((n) => n !== 'constructor');
    expect(protoMethods.sort()).toEqual([...CAMEL, 'getArtifactCacheHealth'].sort());
  });

  it('snake_case aliases are own enumerable properties holding bound functions', () => {
    const own = Object.keys(engine).filter((k) => !k.startsWith('_'));
    expect(own.sort()).toEqual([...SNAKE].sort());
    const detached = engine.list_models;
    expect(detached()).toEqual([]);
    const health = engine.health_check;
    return expect(health()).resolves.toMatchObject({ status: 'unhealthy' });
  });

  it('index.d.ts declares EnginePublicAPI with exactly the 35 names', () => {
    const dts = readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
    const body = dts.slice(dts.indexOf('export interface EnginePublicAPI extends EventEmitter<EngineEvents> {'));
    const block = body.slice(0, body.indexOf('\n}\n'));
    const names = [...block.matchAll(/^ {2}(\w+)\(/gm)].map((m) => m[1]);
    expect(names.sort()).toEqual([...SNAPSHOT].sort());
  });

  it('index.d.ts declares every CORE type-only export', () => {
    const dts = readFileSync(path.join(ROOT, 'index.d.ts'), 'utf8');
    const core = ['EngineOptions', 'TelemetryOptions', 'TelemetryHooks', 'LoadModelOptions',
      'QuantizationMode', 'ModelIdentifier', 'CreateGeneratorOptions', 'GeneratorParams',
      'PromptTemplate', 'StructuredOutputConfig', 'VisionPromptConfig', 'GeneratorChunk',
      'TokenizeRequest', 'TokenizeResponse', 'GenerationStats', 'EngineError', 'ModelDescriptor',
      'TokenizerConfig', 'ModelState', 'ModelHandle', 'CompatibilityReport', 'RuntimeInfo',
      'HealthStatus', 'ModelCacheStats', 'EnginePublicAPI', 'EngineEvents', 'EngineEventName',
      'EngineEventHandler', 'ModelLoadedEvent', 'ModelUnloadedEvent', 'ModelInvalidatedEvent',
      'GenerationStartedEvent', 'TokenGeneratedEvent', 'GenerationCompletedEvent', 'ErrorEvent',
      'RuntimeStatusEvent', 'SnakeCaseGeneratorParams', 'SnakeCaseLoadModelOptions',
      'SnakeCaseTokenizeRequest', 'StatsCollectorOptions', 'ValidationResult', 'RuntimeConfig',
      'EngineErrorCode', 'CacheHealth', 'VisionModelHandle', 'ImageInput', 'PriorityLevel'];
    for (const name of core) {
      expect(dts, name).toMatch(new RegExp(`export (declare )?(interface|type|class|enum) ${name}\\b`));
    }
  });
});

describe('EngineClientError (§10.1)', () => {
  const { EngineClientError } = cjs;

  it('has name EngineError, code, message and is an Error', () => {
    const e = new EngineClientError('ModelLoadError', 'boom');
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(EngineClientError);
    expect(e.name).toBe('EngineError');
    expect(e.code).toBe('ModelLoadError');
    expect(e.message).toBe('boom');
    expect(typeof e.stack).toBe('string');
  });

  it('has an own details property only when provided', () => {
    const without = new EngineClientError('RuntimeError', 'x');
    expect(Object.prototype.hasOwnProperty.call(without, 'details')).toBe(false);
    expect(without.toObject()).toEqual({ code: 'RuntimeError', message: 'x' });
    const details = { field: 'maxTokens' };
    const withD = new EngineClientError('InvalidParams', 'y', details);
    expect(Object.prototype.hasOwnProperty.call(withD, 'details')).toBe(true);
    expect(withD.details).toBe(details);
    expect(withD.toObject()).toEqual({ code: 'InvalidParams', message: 'y', details });
  });

  it('is the same class from require and import (instanceof works across both)', () => {
    const e = new esm.EngineClientError('Timeout', 't');
    expect(e).toBeInstanceOf(cjs.EngineClientError);
  });
});

describe('TimeoutError (§2.2, §12.2)', () => {
  it('is an EngineClientError with code Timeout and request fields', () => {
    const e = cjs.createTimeoutError('generate', 5000, 'req-7', 5012);
    expect(e).toBeInstanceOf(cjs.TimeoutError);
    expect(e).toBeInstanceOf(cjs.EngineClientError);
    expect(e.name).toBe('TimeoutError');
    expect(e.code).toBe('Timeout');
    expect(e).toMatchObject({ method: 'generate', timeout: 5000, requestId: 'req-7', duration: 5012 });
    expect(e.message).toContain('5000');
    expect(e.message).toContain('generate');
    expect(e.message).toContain('req-7');
    expect(e.toObject().details).toEqual({
      method: 'generate', timeout: 5000, requestId: 'req-7', duration: 5012,
    });
  });

  it('uses the original wording and also accepts the original constructor form', () => {
    expect(cjs.createTimeoutError('generate', 5000, 'req-7').message)
      .toBe('Request timed out after 5000ms: generate (id: req-7)');
    expect(cjs.createTimeoutError('tokenize', 10).message).toBe('Request timed out after 10ms: tokenize');
    const e = new cjs.TimeoutError('custom text', { method: 'loadModel', timeout: 30, duration: 31 });
    expect(e.message).toBe('custom text');
    expect(e).toMatchObject({ code: 'Timeout', method: 'loadModel', timeout: 30, duration: 31 });
    expect(e.toObject().details).toEqual({ method: 'loadModel', timeout: 30, duration: 31 });
  });

  it('omits optional fields that were not given', () => {
    const e = new cjs.TimeoutError('tokenize', 100);
    expect(e.toObject().details).toEqual({ method: 'tokenize', timeout: 100 });
    expect('requestId' in e).toBe(false);
  });
});

describe('pure JS helpers', () => {
  it('clamp / normalizeTemperature / normalizeTopP', () => {
    expect(cjs.clamp(5, 0, 2)).toBe(2);
    expect(cjs.clamp(-1, 0, 2)).toBe(0);
    expect(cjs.normalizeTemperature(undefined)).toBeUndefined();
    expect(cjs.normalizeTemperature(3)).toBe(2);
    expect(cjs.normalizeTemperature(0.5)).toBe(0.5);
    expect(cjs.normalizeTopP(1.5)).toBe(1);
    expect(cjs.normalizeTopP(-0.5)).toBe(0);
    expect(cjs.normalizeTopP(undefined)).toBeUndefined();
  });

  it('getEngine() is null before the module-level helpers are used', () => {
    expect(cjs.getEngine()).toBeNull();
  });

  it('GenerationStatsCollector measures in seconds', async () => {
    const c = new cjs.GenerationStatsCollector();
    expect(c.getStats()).toEqual({
      tokensGenerated: 0, tokensPerSecond: 0, timeToFirstToken: 0, totalTime: 0,
    });
    expect(c.isStarted).toBe(false);
    c.update('a');
    c.update('b');
    c.stop();
    const s = c.getStats();
    expect(c.isStarted).toBe(true);
    expect(c.hasTokens).toBe(true);
    expect(s.tokensGenerated).toBe(2);
    expect(s.totalTime).toBeGreaterThanOrEqual(0.0001);
    expect(s.totalTime).toBeLessThan(5);
    expect(s.tokensPerSecond).toBeCloseTo(2 / s.totalTime, 5);
    c.reset();
    expect(c.tokensGenerated).toBe(0);
    const manual = new cjs.GenerationStatsCollector({ autoStart: false });
    manual.update('x');
    expect(manual.tokensGenerated).toBe(0);
  });

  it('telemetry bridge counts through its hooks only when enabled', () => {
    const off = cjs.createTelemetryBridge({ enabled: false });
    expect(off.hooks).toEqual({});
    const on = cjs.createTelemetryBridge({ enabled: true });
    on.hooks.onModelLoaded({});
    on.hooks.onError({ code: 'RuntimeError', message: 'x' });
    expect(cjs.getMetrics(on.manager)).toMatchObject({ modelsLoaded: 1, errors: 1 });
    expect(on.manager.isStarted()).toBe(false);
  });
});
