// §3 lifecycle, §8.3 runtime info, §8.4 health, §8.6 cache stats — against the real addon.
import { describe, it, expect, afterEach } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Engine, createEngine, withEngine, EngineClientError } from 'mlx-serving';
import { ROOT, fixture, rejectionOf } from './support/env.mjs';

const LLAMA = fixture('llama');
const QWEN2 = fixture('qwen2');
const engines = [];
function track(e) {
  engines.push(e);
  return e;
}
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.shutdown().catch(() => undefined)));
});

describe('lazy start', () => {
  it('a fresh engine is idle: unhealthy, no models, healthCheck does not start it', async () => {
    const engine = track(new Engine());
    expect(engine.listModels()).toEqual([]);
    expect(engine.getModelInfo('x')).toBeUndefined();
    const before = await engine.healthCheck();
    expect(before).toEqual({
      status: 'unhealthy', uptime: 0, activeStreams: 0, loadedModels: 0,
      runtime: { status: 'stopped' },
    });
    expect(await engine.healthCheck()).toEqual(before);
  });

  it('the first async call starts the runtime', async () => {
    const engine = track(new Engine());
    const err = await rejectionOf(engine.tokenize({ model: 'nope', text: 'x' }));
    expect(err.code).toBe('ModelNotLoaded');
    const h = await engine.healthCheck();
    expect(h.status).toBe('healthy');
    expect(h.runtime).toEqual({ pid: process.pid, status: 'running' });
    expect(h.uptime).toBeGreaterThanOrEqual(0);
    expect(h.activeStreams).toBe(0);
    expect(h.loadedModels).toBe(0);
  });

  it('createEngine resolves to a started Engine', async () => {
    const engine = track(await createEngine());
    expect(engine).toBeInstanceOf(Engine);
    expect((await engine.healthCheck()).status).toBe('healthy');
  });

  it('uptime grows while running', async () => {
    const engine = track(await createEngine());
    const a = (await engine.healthCheck()).uptime;
    await new Promise((r) => setTimeout(r, 60));
    const b = (await engine.healthCheck()).uptime;
    expect(b - a).toBeGreaterThanOrEqual(40);
  });
});

describe('shutdown', () => {
  it('never-started shutdown resolves; repeated shutdowns resolve', async () => {
    const engine = new Engine();
    await expect(engine.shutdown()).resolves.toBeUndefined();
    await expect(engine.dispose()).resolves.toBeUndefined();
  });

  it('concurrent calls share one promise; the engine is stopped afterwards', async () => {
    const engine = track(await createEngine());
    await engine.loadModel(LLAMA);
    const p1 = engine.shutdown();
    const p2 = engine.shutdown();
    const p3 = engine.dispose();
    expect(p2).toBe(p1);
    expect(p3).toBe(p1);
    const during = await rejectionOf(engine.loadModel(LLAMA));
    expect(during).toBeInstanceOf(EngineClientError);
    expect(during.code).toBe('RuntimeError');
    expect(during.message).toBe('Engine shutdown in progress');
    await p1;
    expect(engine.listModels()).toEqual([]);
    expect(engine.getModelInfo(LLAMA)).toBeUndefined();
    expect(await engine.healthCheck()).toMatchObject({
      status: 'unhealthy', uptime: 0, loadedModels: 0, runtime: { status: 'stopped' },
    });
    await expect(engine.shutdown()).resolves.toBeUndefined();
  });

  it('restarts from scratch after shutdown: previously loaded models are gone', async () => {
    const engine = track(await createEngine());
    await engine.loadModel(LLAMA);
    expect((await engine.tokenize({ model: LLAMA, text: 'hello' })).tokens.length).toBeGreaterThan(0);
    await engine.shutdown();
    const err = await rejectionOf(engine.tokenize({ model: LLAMA, text: 'hello' }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelNotLoaded');
    expect(err.message).toBe(`Model ${LLAMA} must be loaded before tokenization`);
    expect((await engine.healthCheck()).status).toBe('healthy');
    const handle = await engine.loadModel(LLAMA);
    expect(handle.state).toBe('ready');
    expect(engine.listModels()).toHaveLength(1);
  });

  it('shutdown ends an in-flight generator instead of hanging it', async () => {
    const engine = track(await createEngine());
    await engine.loadModel(LLAMA);
    const gen = engine.createGenerator({ model: LLAMA, prompt: 'hello', maxTokens: 400, temperature: 0 });
    const first = await gen.next();
    expect(first.done).toBe(false);
    await engine.shutdown();
    const rest = [];
    for await (const c of gen) rest.push(c);
    const terminal = rest.filter((c) => c.type !== 'token');
    expect(terminal.length).toBeLessThanOrEqual(1);
    if (terminal.length === 1) {
      expect(terminal[0].type).toBe('error');
      expect(['Cancelled', 'GenerationError']).toContain(terminal[0].error.code);
    }
    expect(rest.filter((c) => c.type === 'token').length).toBeLessThan(400);
  });
});

describe('withEngine', () => {
  it('returns the callback value and always disposes', async () => {
    let seen;
    const value = await withEngine(async (engine) => {
      seen = engine;
      await engine.loadModel(LLAMA);
      return engine.listModels().length;
    });
    expect(value).toBe(1);
    expect((await seen.healthCheck()).status).toBe('unhealthy');
  });

  it('disposes when the callback throws', async () => {
    let seen;
    const boom = new Error('boom');
    await expect(withEngine(async (engine) => {
      seen = engine;
      throw boom;
    })).rejects.toBe(boom);
    expect((await seen.healthCheck()).status).toBe('unhealthy');
  });
});

describe('runtime info, cache stats, batch stubs', () => {
  it('getRuntimeInfo reports version, protocol, capabilities, memory', async () => {
    const engine = track(new Engine());
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const info = await engine.getRuntimeInfo();
    expect(info.version).toBe(pkg.version);
    expect(typeof info.mlxVersion).toBe('string');
    expect(info.mlxVersion.length).toBeGreaterThan(0);
    expect(info.protocol).toBe('json-rpc-2.0');
    expect(info.capabilities).toEqual(expect.arrayContaining(['load_model', 'generate', 'tokenize']));
    // Only what works is listed: vision (§7.12) is native now.
    expect(info.capabilities).toEqual(expect.arrayContaining(['load_vision_model', 'generate_with_image']));
    expect(info.memory.rss).toBeGreaterThan(0);
    expect(['cpu', 'cuda', 'metal']).toContain(info.backend.device);
    expect(await engine.getRuntimeInfo()).toMatchObject({
      version: info.version, protocol: info.protocol, capabilities: info.capabilities,
    });
  });

  it('getCacheStats: empty on a fresh engine, most-recent first, entry removed on unload', async () => {
    const engine = track(new Engine());
    const statsPromise = engine.getCacheStats();
    expect(statsPromise).toBeInstanceOf(Promise);
    expect(await statsPromise).toEqual({
      loadedModels: 0, maxModels: 5, cacheEnabled: true, models: [],
      promptCache: { entries: 0, bytes: 0, hits: 0, misses: 0, evictions: 0 },
    });
    await engine.loadModel(LLAMA);
    await new Promise((r) => setTimeout(r, 5));
    await engine.loadModel(QWEN2);
    let stats = await engine.get_cache_stats();
    expect(stats.loadedModels).toBe(2);
    expect(stats.models.map((m) => m.modelId)).toEqual([QWEN2, LLAMA]);
    for (const m of stats.models) {
      expect(Math.abs(m.lastAccess - Date.now())).toBeLessThan(60_000);
    }
    await new Promise((r) => setTimeout(r, 5));
    await engine.loadModel(LLAMA); // cached: refreshes LRU time
    stats = await engine.getCacheStats();
    expect(stats.models.map((m) => m.modelId)).toEqual([LLAMA, QWEN2]);
    await engine.unloadModel(QWEN2);
    stats = await engine.getCacheStats();
    expect(stats.models.map((m) => m.modelId)).toEqual([LLAMA]);
    expect(stats.loadedModels).toBe(1);
  });

  it('batch stats report continuous batching; artifact cache health is the empty shape', async () => {
    const engine = new Engine();
    const stats = engine.getBatchStats();
    expect(stats).toMatchObject({ tokenizeBatches: 0, adaptiveSizingEnabled: false });
    expect(stats.generation).toEqual({ steps: 0, avgBatchSize: 0, maxBatchSize: 0, queued: 0 });
    expect(stats.tokenizePerformance).toHaveProperty('p95BatchTime');
    expect(engine.resetBatchStats()).toBeUndefined();
    await expect(engine.flushBatches()).resolves.toBeUndefined();
    expect(await engine.getArtifactCacheHealth()).toEqual({
      healthy: true, sizeBytes: 0, entryCount: 0, hitRate: 0, nearLimit: false, corruptedEntries: [],
    });
  });
});
