// §2.3 helpers, §2.4 module-level helpers, §12.1 MLXEngine, §9.3 telemetry hooks — real addon,
// tiny fixture.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import {
  Engine, EngineClientError, MLXEngine, createMLXEngine, generateText, generateTextStreaming,
  ensureModelLoaded, batchTokenize, collectChunks, waitForModelReady, isEngineHealthy,
  getTotalTokenCount, retryLoadModel, load_model, create_generator, tokenize, generate,
  unload_model, shutdown, getEngine,
} from 'mlx-serving';
import { fixture, collect, rejectionOf, tempDir } from './support/env.mjs';

const LLAMA = fixture('llama');
const QWEN3 = fixture('qwen3');
const params = { model: LLAMA, prompt: 'Hello there', temperature: 0, maxTokens: 5 };

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(LLAMA);
});
afterAll(async () => {
  await engine.shutdown();
});

describe('convenience helpers (§2.3)', () => {
  it('generateText / generateTextStreaming / collectChunks agree with generate()', async () => {
    const expected = await engine.generate(params);
    expect(await generateText(engine, params)).toBe(expected);
    const seen = [];
    expect(await generateTextStreaming(engine, params, (t) => seen.push(t))).toBe(expected);
    expect(seen).toHaveLength(5);
    expect(seen.join('')).toBe(expected);
    const chunks = await collectChunks(engine, params);
    expect(chunks.map((c) => c.type)).toEqual(['token', 'token', 'token', 'token', 'token', 'metadata']);
  });

  it('error chunks become plain Errors in the helpers', async () => {
    const slow = { ...params, maxTokens: 400 };
    const wrapped = {
      createGenerator: (p) => engine.createGenerator(p, { timeoutMs: 1 }),
    };
    const err = await rejectionOf(generateText(wrapped, slow));
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(EngineClientError);
    expect(err.message).toMatch(/timed out/);
  });

  it('ensureModelLoaded returns the ready handle without reloading', async () => {
    const events = [];
    engine.on('model:loaded', (e) => events.push(e));
    const h = await ensureModelLoaded(engine, { model: LLAMA });
    engine.removeAllListeners('model:loaded');
    expect(h).toEqual(engine.getModelInfo(LLAMA));
    expect(events).toHaveLength(0);
  });

  it('batchTokenize / getTotalTokenCount', async () => {
    const texts = ['one', 'two words', 'three little words'];
    const all = await batchTokenize(engine, LLAMA, texts);
    for (let i = 0; i < texts.length; i += 1) {
      expect(all[i]).toEqual((await engine.tokenize({ model: LLAMA, text: texts[i] })).tokens);
    }
    expect(await getTotalTokenCount(engine, LLAMA, texts)).toBe(all.flat().length);
  });

  it('waitForModelReady resolves for a loaded model and times out for an unknown one', async () => {
    expect((await waitForModelReady(engine, LLAMA, 1000, 10)).state).toBe('ready');
    await expect(waitForModelReady(engine, 'ghost', 50, 10)).rejects.toThrow(/ghost/);
  });

  it('isEngineHealthy', async () => {
    expect(await isEngineHealthy(engine)).toBe(true);
    expect(await isEngineHealthy(new Engine())).toBe(false);
    expect(await isEngineHealthy({ healthCheck: async () => { throw new Error('x'); } })).toBe(false);
  });

  it('retryLoadModel retries with backoff and rethrows the last error', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const errors = [];
      engine.on('error', (e) => errors.push(e));
      const t0 = Date.now();
      const err = await rejectionOf(retryLoadModel(engine, `${dir}/missing`, 3, 10));
      engine.removeAllListeners('error');
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('ModelLoadError');
      expect(errors).toHaveLength(3);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(30); // 10 + 20 ms of backoff
      expect((await retryLoadModel(engine, LLAMA, 3, 10)).descriptor.id).toBe(LLAMA);
    } finally {
      cleanup();
    }
  });
});

describe('module-level helpers (§2.4)', () => {
  afterAll(async () => {
    await shutdown();
  });

  it('share one lazily created engine, forgotten by shutdown()', async () => {
    expect(getEngine()).toBeNull();
    const kit = await load_model(QWEN3, { temperature: 0 });
    const global = getEngine();
    expect(global).toBeInstanceOf(Engine);
    expect(kit.descriptor.id).toBe(QWEN3);
    const { tokens } = await tokenize(kit, 'hello world');
    const viaString = await generate(kit, 'hello world', { max_tokens: 4, temperature: 0 });
    const viaTokens = await generate(kit, tokens, { max_tokens: 4, temperature: 0 });
    expect(viaTokens).toBe(viaString);
    const chunks = await collect(create_generator(kit, 'hello world', { max_tokens: 4, temperature: 0 }));
    expect(chunks.filter((c) => c.type === 'token').map((c) => c.token).join('')).toBe(viaString);
    await unload_model(kit);
    expect(global.getModelInfo(QWEN3)).toBeUndefined();
    await shutdown();
    expect(getEngine()).toBeNull();
    expect((await global.healthCheck()).status).toBe('unhealthy');
  });
});

describe('MLXEngine (§12.1)', () => {
  it('rejects before init with the original message', async () => {
    const m = new MLXEngine(LLAMA);
    expect(m.isInitialized()).toBe(false);
    expect(m.getEngine()).toBeNull();
    expect(m.getModelHandle()).toBeNull();
    await expect(m.generate('x')).rejects.toThrow('MLXEngine not initialized. Call init() first.');
    await expect(m.tokenize('x')).rejects.toThrow('MLXEngine not initialized. Call init() first.');
    const gen = m.generateStream('x');
    await expect(gen.next()).rejects.toThrow('MLXEngine not initialized. Call init() first.');
  });

  it('init → generate / generateStream / tokenize → dispose', async () => {
    const m = await createMLXEngine({ model: LLAMA });
    try {
      expect(m.isInitialized()).toBe(true);
      expect(await m.init()).toBe(m);
      expect(m.getModelHandle().descriptor.id).toBe(LLAMA);
      const text = await m.generate('Hello there', { max_tokens: 5, temperature: 0 });
      expect(text).toBe(await engine.generate(params));
      const chunks = await collect(m.generateStream('Hello there', { maxTokens: 5, temperature: 0 }));
      expect(chunks.at(-1).type).toBe('metadata');
      expect(await m.tokenize('Hello there')).toEqual(
        (await engine.tokenize({ model: LLAMA, text: 'Hello there' })).tokens,
      );
    } finally {
      const e = m.getEngine();
      await m.dispose();
      expect(m.isInitialized()).toBe(false);
      expect((await e.healthCheck()).status).toBe('unhealthy');
    }
  });
});

describe('telemetry hooks with the real engine (§9.3)', () => {
  it('onModelLoaded, onTokenGenerated per token, onGenerationCompleted once, onError on error chunks', async () => {
    const calls = { loaded: [], tokens: [], completed: [], errors: [] };
    const e = new Engine({
      telemetry: {
        enabled: true,
        hooks: {
          onModelLoaded: (h) => calls.loaded.push(h.descriptor.id),
          onTokenGenerated: (t, s) => calls.tokens.push([t, s.tokensGenerated]),
          onGenerationCompleted: (s) => calls.completed.push(s),
          onError: (err) => calls.errors.push(err.code),
        },
      },
    });
    try {
      await e.loadModel(LLAMA);
      const text = await e.generate(params);
      expect(calls.loaded).toEqual([LLAMA]);
      expect(calls.tokens.map(([, n]) => n)).toEqual([1, 2, 3, 4, 5]);
      expect(calls.tokens.map(([t]) => t).join('')).toBe(text);
      expect(calls.completed).toHaveLength(1);
      expect(calls.completed[0].tokensGenerated).toBe(5);
      await rejectionOf(e.generate({ ...params, maxTokens: 400 }, { timeoutMs: 1 }));
      await rejectionOf(e.loadModel({ model: '' }));
      expect(calls.errors).toEqual(['Timeout', 'InvalidParams']);
    } finally {
      await e.shutdown();
    }
  });
});
