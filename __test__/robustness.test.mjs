// Bad input never hurts the engine (DESIGN quality bar, spec §10.3, issue 3 "Bad input"):
// property-based tests throw random JS/JSON values at loadModel, tokenize and createGenerator.
// Plus shutdown racing an in-flight load (§3) and health degradation (§7.10, §8.4).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, defaultModel, collect, rejectionOf } from './support/env.mjs';

const LLAMA = fixture('llama');

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(LLAMA);
});
afterAll(async () => {
  await engine.shutdown();
});

/** Any JS value a caller could pass, including ones JSON cannot carry. */
const anyValue = fc.anything({
  withBigInt: true, withBoxedValues: true, withDate: true, withMap: true, withSet: true,
  withNullPrototype: true, withSparseArray: true, withTypedArray: true, withObjectString: true,
});
/** Request-shaped objects whose fields are sometimes right, so validation is passed at times. */
const maybe = (good) => fc.oneof(good, fc.jsonValue(), anyValue);
const generatorParams = fc.oneof(anyValue, fc.jsonValue(), fc.record({
  model: maybe(fc.constant(LLAMA)),
  model_id: maybe(fc.constantFrom(LLAMA, 'nope')),
  prompt: maybe(fc.oneof(fc.string(), fc.record({ tokens: fc.array(fc.nat({ max: 60000 }), { maxLength: 4 }) }),
    fc.record({ template: fc.string(), variables: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.double())) }))),
  maxTokens: maybe(fc.integer({ min: 1, max: 3 })),
  temperature: maybe(fc.double({ min: 0, max: 2, noNaN: true })),
  topP: maybe(fc.double({ min: 0, max: 1 })),
  seed: maybe(fc.nat()),
  stopSequences: maybe(fc.array(fc.string(), { maxLength: 3 })),
  stop_token_ids: maybe(fc.array(fc.nat({ max: 70000 }), { maxLength: 3 })),
  repetitionPenalty: maybe(fc.double({ min: 0, max: 3, noNaN: true })),
}, { requiredKeys: [] }));
const loadOptions = fc.oneof(anyValue, fc.jsonValue(), fc.string(), fc.record({
  model: maybe(fc.oneof(fc.string(), fc.constant(LLAMA))),
  model_id: maybe(fc.string()),
  localPath: maybe(fc.constantFrom(LLAMA, '/nonexistent', '.', '')),
  quantization: maybe(fc.constantFrom('none', 'int8', 'int4')),
  draft: maybe(fc.boolean()),
  parameters: maybe(fc.dictionary(fc.string(), fc.jsonValue())),
}, { requiredKeys: [] }));
const tokenizeRequest = fc.oneof(anyValue, fc.jsonValue(), fc.record({
  model: maybe(fc.constant(LLAMA)),
  model_id: maybe(fc.constant(LLAMA)),
  text: maybe(fc.string()),
  addBos: maybe(fc.boolean()),
  add_special_tokens: maybe(fc.boolean()),
}, { requiredKeys: [] }));

function expectEngineError(err) {
  expect(err).toBeInstanceOf(EngineClientError);
  expect(typeof err.code).toBe('string');
  expect(typeof err.message).toBe('string');
  expect(err.message).not.toMatch(/\n\s+at /); // no stack traces in messages (§10.2)
}

async function expectHealthyAndUsable() {
  const health = await engine.healthCheck();
  expect(health.status).toBe('healthy');
  expect(health.activeStreams).toBe(0);
  expect(engine.getModelInfo(LLAMA)?.state).toBe('ready');
  expect((await engine.tokenize({ model: LLAMA, text: 'ok' })).tokens.length).toBeGreaterThan(0);
  const chunks = await collect(engine.createGenerator({ model: LLAMA, prompt: 'ok', maxTokens: 2, temperature: 0 }));
  expect(chunks[chunks.length - 1].type).toBe('metadata');
}

const RUNS = { numRuns: 120, seed: 20240611 };

describe('property: random values never crash the engine', () => {
  it('loadModel: resolves with a ready handle or rejects with an EngineClientError', async () => {
    const errorEvents = [];
    const onError = (e) => errorEvents.push(e);
    engine.on('error', onError);
    await fc.assert(fc.asyncProperty(loadOptions, async (opts) => {
      try {
        const handle = await engine.loadModel(opts);
        expect(handle.state).toBe('ready');
        if (handle.descriptor.id !== LLAMA) await engine.unloadModel(handle.descriptor.id);
      } catch (err) {
        expectEngineError(err);
      }
    }), RUNS);
    engine.off('error', onError);
    for (const ev of errorEvents) expect(typeof ev.error.code).toBe('string');
    await expectHealthyAndUsable();
  }, 120_000);

  it('tokenize: resolves with integer tokens or rejects with an EngineClientError', async () => {
    await fc.assert(fc.asyncProperty(tokenizeRequest, async (req) => {
      try {
        const { tokens, tokenStrings } = await engine.tokenize(req);
        expect(tokens.every(Number.isInteger)).toBe(true);
        expect(tokenStrings).toHaveLength(tokens.length);
      } catch (err) {
        expectEngineError(err);
      }
    }), RUNS);
    await expectHealthyAndUsable();
  }, 120_000);

  it('createGenerator: the §7.1 protocol holds or the first next() rejects with an EngineClientError', async () => {
    await fc.assert(fc.asyncProperty(generatorParams, async (params) => {
      const gen = engine.createGenerator(params);
      const chunks = [];
      try {
        // Read a few chunks, then leave early (return() must clean up too).
        for await (const chunk of gen) {
          chunks.push(chunk);
          if (chunks.length >= 6) break;
        }
      } catch (err) {
        expect(chunks).toEqual([]); // failures before the stream starts are thrown, not yielded
        expectEngineError(err);
        return;
      }
      const terminal = chunks.filter((c) => c.type !== 'token');
      expect(terminal.length).toBeLessThanOrEqual(1);
      if (terminal.length === 1) expect(chunks[chunks.length - 1]).toBe(terminal[0]);
      for (const c of chunks) {
        if (c.type === 'token') expect(Number.isInteger(c.tokenId)).toBe(true);
        if (c.type === 'error') expect(typeof c.error.message).toBe('string');
      }
    }), { ...RUNS, numRuns: 80 });
    await expectHealthyAndUsable();
  }, 180_000);
});

describe('shutdown during an in-flight loadModel (§3)', () => {
  it('the load rejects RuntimeError instead of resolving with a dropped model; the engine restarts cleanly', async () => {
    const e = new Engine();
    const errors = [];
    const loaded = [];
    e.on('error', (ev) => errors.push(ev));
    e.on('model:loaded', (ev) => loaded.push(ev));
    try {
      const load = e.loadModel(defaultModel());
      const stop = e.shutdown();
      const err = await rejectionOf(load);
      await stop;
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('RuntimeError');
      expect(err.message).toBe('Engine shutdown in progress');
      expect(errors.map((ev) => [ev.error.code, ev.context])).toEqual([['RuntimeError', 'loadModel']]);
      expect(loaded).toEqual([]);
      expect(e.listModels()).toEqual([]);
      expect((await e.healthCheck()).status).toBe('unhealthy');
      // The same instance restarts on the next call (§14.9) with nothing loaded.
      const handle = await e.loadModel(LLAMA);
      expect(handle.state).toBe('ready');
      expect(e.listModels().map((h) => h.descriptor.id)).toEqual([LLAMA]);
    } finally {
      await e.shutdown();
    }
  }, 60_000);

  it('a load already under way when shutdown begins (engine running) also rejects', async () => {
    const e = new Engine();
    try {
      await e.loadModel(LLAMA); // running
      const load = e.loadModel(defaultModel());
      await new Promise((r) => setImmediate(r)); // let the native load begin
      const stop = e.shutdown();
      const err = await rejectionOf(load);
      await stop;
      expect(err.code).toBe('RuntimeError');
      expect(e.listModels()).toEqual([]);
      expect(e.getModelInfo(defaultModel())).toBeUndefined();
    } finally {
      await e.shutdown();
    }
  }, 60_000);

  it('calls issued while shutdown is in progress reject with the same RuntimeError', async () => {
    const e = new Engine();
    try {
      await e.loadModel(LLAMA);
      const stop = e.shutdown();
      const [load, tok] = await Promise.all([rejectionOf(e.loadModel(LLAMA)),
        rejectionOf(e.tokenize({ model: LLAMA, text: 'x' }))]);
      await stop;
      for (const err of [load, tok]) {
        expect(err).toBeInstanceOf(EngineClientError);
        expect(err.code).toBe('RuntimeError');
        expect(err.message).toBe('Engine shutdown in progress');
      }
    } finally {
      await e.shutdown();
    }
  });
});

describe('health degradation (§7.10, §8.4)', () => {
  it('more than 10 active streams → degraded; back to healthy once they end', async () => {
    const params = (i) => ({ model: LLAMA, prompt: `stream ${i}`, maxTokens: 400, temperature: 0 });
    const gens = Array.from({ length: 11 }, (_, i) => engine.createGenerator(params(i)));
    try {
      for (const g of gens.slice(0, 10)) expect((await g.next()).done).toBe(false);
      let health = await engine.healthCheck();
      expect(health.activeStreams).toBe(10);
      expect(health.status).toBe('healthy'); // exactly 10 is not "more than 10"
      expect((await gens[10].next()).done).toBe(false);
      health = await engine.healthCheck();
      expect(health.activeStreams).toBe(11);
      expect(health.status).toBe('degraded');
      expect(health.runtime).toEqual({ pid: process.pid, status: 'running' });
    } finally {
      for (const g of gens) await g.return(undefined);
    }
    const after = await engine.healthCheck();
    expect(after.activeStreams).toBe(0);
    expect(after.status).toBe('healthy');
  }, 60_000);
});
