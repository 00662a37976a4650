// §5.2 / §8.1 loadModel forms and handle shape, §9 model events, §10.3 bad model folders —
// against the real addon with the tiny random-weight fixtures.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { writeFileSync, rmSync, readFileSync, readdirSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, copyFixture, tempDir, rejectionOf, firstNextRejection } from './support/env.mjs';

const LLAMA = fixture('llama');
const MISTRAL = fixture('mistral');
const QWEN2 = fixture('qwen2');
const QWEN3 = fixture('qwen3');
const LLAMA4 = fixture('llama-4bit');

let engine;
beforeAll(() => {
  engine = new Engine();
});
afterAll(async () => {
  await engine.shutdown();
});

function listen(e, name) {
  const events = [];
  const fn = (ev) => events.push(ev);
  e.on(name, fn);
  return { events, off: () => e.off(name, fn) };
}

/** The engine is still usable: a good model loads and tokenizes. */
async function expectUsable(e) {
  const handle = await e.loadModel(LLAMA);
  expect(handle.state).toBe('ready');
  const { tokens } = await e.tokenize({ model: LLAMA, text: 'still alive' });
  expect(tokens.length).toBeGreaterThan(0);
}

describe('loadModel forms', () => {
  it('path string → ready handle whose descriptor.id is the path', async () => {
    const handle = await engine.loadModel(LLAMA);
    expect(handle).toMatchObject({
      descriptor: { id: LLAMA, modality: 'text', family: 'mlx-lm' },
      state: 'ready',
      draft: false,
    });
    expect(['local', 'huggingface']).toContain(handle.descriptor.source);
    expect(Number.isInteger(handle.contextLength)).toBe(true);
    expect(handle.contextLength).toBeGreaterThan(0);
    const cfg = JSON.parse(readFileSync(path.join(LLAMA, 'config.json'), 'utf8'));
    if (cfg.max_position_embeddings) expect(handle.contextLength).toBe(cfg.max_position_embeddings);
    expect(handle.metadata).toMatchObject({ isVisionModel: false, draft: false });
    expect(typeof handle.metadata.parameterCount).toBe('number');
    expect(handle.metadata.parameterCount).toBeGreaterThan(0);
    expect(typeof handle.metadata.dtype).toBe('string');
    expect(engine.getModelInfo(LLAMA)).toEqual(handle);
  });

  it('{model} object form and the load_model alias give the same id', async () => {
    const a = await engine.loadModel({ model: MISTRAL });
    expect(a.descriptor.id).toBe(MISTRAL);
    const detached = engine.load_model;
    const b = await detached({ model: MISTRAL });
    expect(b.descriptor.id).toBe(MISTRAL);
  });

  it('{model: alias, localPath} binds the alias id to a directory (also local_path)', async () => {
    const h = await engine.loadModel({ model: 'my-alias', localPath: QWEN2 });
    expect(h.descriptor.id).toBe('my-alias');
    expect(engine.getModelInfo('my-alias')).toBeDefined();
    const t = await engine.tokenize({ model: 'my-alias', text: 'hello' });
    expect(t.tokens.length).toBeGreaterThan(0);
    const h2 = await engine.load_model({ model: 'snake-alias', local_path: QWEN3 });
    expect(h2.descriptor.id).toBe('snake-alias');
    await engine.unloadModel('snake-alias');
  });

  it('model_id overrides model', async () => {
    const h = await engine.loadModel({ model: 'ignored-id', model_id: 'override-id', localPath: QWEN3 });
    expect(h.descriptor.id).toBe('override-id');
    expect(engine.getModelInfo('ignored-id')).toBeUndefined();
    await engine.unloadModel('override-id');
  });

  it('listModels is sync, in load order, and includes every handle', () => {
    const ids = engine.listModels().map((h) => h.descriptor.id);
    expect(ids).toEqual(expect.arrayContaining([LLAMA, MISTRAL, 'my-alias']));
    expect(ids.indexOf(LLAMA)).toBeLessThan(ids.indexOf(MISTRAL));
  });

  it('a 4-bit quantized (mlx-community format) model loads and tokenizes', async () => {
    await engine.unloadModel('my-alias');
    const h = await engine.loadModel(LLAMA4);
    expect(h.state).toBe('ready');
    expect(h.metadata.quantization).not.toBeUndefined();
    const t = await engine.tokenize({ model: LLAMA4, text: 'hello world' });
    expect(t.tokens.length).toBeGreaterThan(0);
    await engine.unloadModel(LLAMA4);
  });

  it('loading an already-loaded id returns the cached handle (no reload)', async () => {
    const first = engine.getModelInfo(LLAMA);
    const again = await engine.loadModel(LLAMA);
    expect(again).toEqual(first);
  });
});

describe('model events', () => {
  it('model:loaded {modelId, handle, timestamp}, also for a cached handle', async () => {
    const { events, off } = listen(engine, 'model:loaded');
    const before = Date.now();
    const h = await engine.loadModel(LLAMA); // cached
    off();
    expect(events).toHaveLength(1);
    expect(events[0].modelId).toBe(LLAMA);
    expect(events[0].handle).toEqual(h);
    expect(events[0].timestamp).toBeGreaterThanOrEqual(before);
    expect(events[0].timestamp).toBeLessThanOrEqual(Date.now());
  });

  it('model:unloaded is emitted even for an unknown id, and unload removes the model', async () => {
    const { events, off } = listen(engine, 'model:unloaded');
    await expect(engine.unloadModel('never-loaded')).resolves.toBeUndefined();
    await engine.loadModel(MISTRAL);
    await engine.unload_model(MISTRAL);
    off();
    expect(events.map((e) => e.modelId)).toEqual(['never-loaded', MISTRAL]);
    expect(typeof events[0].timestamp).toBe('number');
    expect(engine.getModelInfo(MISTRAL)).toBeUndefined();
  });

  it('warmupModel loads without emitting model:loaded', async () => {
    const e = new Engine();
    try {
      const { events } = listen(e, 'model:loaded');
      await expect(e.warmupModel(QWEN2)).resolves.toBeUndefined();
      await e.warmup_model(QWEN2);
      expect(events).toHaveLength(0);
      expect(e.getModelInfo(QWEN2)?.state).toBe('ready');
      const errors = listen(e, 'error');
      const bad = await rejectionOf(e.warmupModel({ model: '' }));
      expect(bad).toBeInstanceOf(EngineClientError);
      expect(bad.code).toBe('ModelLoadError'); // no validation step in the original warmup
      expect(errors.events.map((ev) => ev.error.code)).toEqual(['ModelLoadError']);
    } finally {
      await e.shutdown();
    }
  });

  it('error event on loadModel failure: {error:{code,message}, context, timestamp}', async () => {
    const { dir, cleanup } = tempDir();
    const missing = path.join(dir, 'does-not-exist');
    try {
      const { events, off } = listen(engine, 'error');
      const err = await rejectionOf(engine.loadModel(missing));
      off();
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('ModelLoadError');
      expect(events).toHaveLength(1);
      expect(events[0].error).toEqual(err.toObject());
      expect(typeof events[0].timestamp).toBe('number');
    } finally {
      cleanup();
    }
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['{}', {}],
    ["{model: ''}", { model: '' }],
    ["{model: 'm', quantization: 'int3'}", { model: 'm', quantization: 'int3' }],
  ])('loadModel(%s) rejects InvalidParams and emits error', async (_label, input) => {
    const { events, off } = listen(engine, 'error');
    const err = await rejectionOf(engine.loadModel(input));
    off();
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.message).toMatch(/^Validation error on field '[^']+': /);
    expect(typeof err.details.field).toBe('string');
    expect(events).toHaveLength(1);
    expect(events[0].error.code).toBe('InvalidParams');
  });

  it('with no error listener a failing load only rejects (eventemitter3 semantics)', async () => {
    const e = new Engine();
    try {
      expect(e.listenerCount('error')).toBe(0);
      const err = await rejectionOf(e.loadModel({ model: '' }));
      expect(err).toBeInstanceOf(EngineClientError);
    } finally {
      await e.shutdown();
    }
  });
});

describe('bad model folders → ModelLoadError naming the problem; engine stays usable', () => {
  const damaged = [];
  afterAll(() => damaged.forEach((d) => d.cleanup()));
  function broken(name, damage) {
    const copy = copyFixture(name);
    damaged.push(copy);
    damage(copy.dir);
    return copy.dir;
  }

  async function expectLoadError(dir, mention) {
    const { events, off } = listen(engine, 'error');
    const err = await rejectionOf(engine.loadModel(dir));
    off();
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelLoadError');
    if (mention) expect(err.message).toContain(mention);
    expect(err.message).not.toMatch(/\n\s+at /); // no stack traces
    expect(events.map((e) => e.error.code)).toEqual(['ModelLoadError']);
    expect(engine.getModelInfo(dir)).toBeUndefined();
    await expectUsable(engine);
    return err;
  }

  it('missing directory', async () => {
    const { dir, cleanup } = tempDir();
    damaged.push({ cleanup });
    await expectLoadError(path.join(dir, 'nope'));
  });

  it('a file instead of a directory', async () => {
    const { dir, cleanup } = tempDir();
    damaged.push({ cleanup });
    const file = path.join(dir, 'model.bin');
    writeFileSync(file, 'x');
    await expectLoadError(file);
  });

  it('missing config.json', async () => {
    await expectLoadError(broken('llama', (d) => rmSync(path.join(d, 'config.json'))), 'config.json');
  });

  it('garbled config.json', async () => {
    await expectLoadError(broken('llama', (d) => writeFileSync(path.join(d, 'config.json'), '{"model_type": "llama", hidden')), 'config.json');
  });

  it('missing tokenizer.json', async () => {
    await expectLoadError(broken('llama', (d) => rmSync(path.join(d, 'tokenizer.json'))), 'tokenizer.json');
  });

  it('truncated safetensors', async () => {
    let file;
    const dir = broken('llama', (d) => {
      file = readdirSync(d).find((f) => f.endsWith('.safetensors'));
      const size = statSync(path.join(d, file)).size;
      truncateSync(path.join(d, file), Math.floor(size / 2));
    });
    await expectLoadError(dir, file);
  });

  it('no safetensors at all', async () => {
    const dir = broken('llama', (d) => {
      for (const f of readdirSync(d)) if (f.includes('safetensors')) rmSync(path.join(d, f));
    });
    await expectLoadError(dir, 'safetensors');
  });

  it('unsupported model_type', async () => {
    const dir = broken('llama', (d) => {
      const p = path.join(d, 'config.json');
      const cfg = JSON.parse(readFileSync(p, 'utf8'));
      cfg.model_type = 'bogus_arch';
      cfg.architectures = ['BogusArchForCausalLM'];
      writeFileSync(p, JSON.stringify(cfg));
    });
    await expectLoadError(dir, 'bogus_arch');
  });

  it('`..` in a model path or localPath → InvalidParams (§10.2), nothing loaded', async () => {
    const { events, off } = listen(engine, 'error');
    const viaLocal = await rejectionOf(engine.loadModel({ model: 'trav', localPath: `${LLAMA}/../llama` }));
    const viaModel = await rejectionOf(engine.loadModel('../fixtures/llama'));
    off();
    for (const err of [viaLocal, viaModel]) {
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('InvalidParams');
    }
    expect(events.map((e) => e.error.code)).toEqual(['InvalidParams', 'InvalidParams']);
    expect(engine.getModelInfo('trav')).toBeUndefined();
  });

  it('a NUL byte in the model id is rejected (InvalidParams or ModelLoadError)', async () => {
    const err = await rejectionOf(engine.loadModel('abc\u0000def'));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(['InvalidParams', 'ModelLoadError']).toContain(err.code);
    await expectUsable(engine);
  });

  it('an unknown hub id without network is ModelLoadError', async () => {
    const err = await rejectionOf(engine.loadModel('definitely-not-a-real-org/not-a-real-model-xyz'));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelLoadError');
    await expectUsable(engine);
  });
});

describe('model capacity (§8.9)', () => {
  it('loading a 6th model evicts the least recently used one', async () => {
    const e = new Engine();
    try {
      for (let i = 0; i < 5; i += 1) {
        await e.loadModel({ model: `cap-${i}`, localPath: LLAMA });
        await new Promise((r) => setTimeout(r, 3));
      }
      await e.loadModel({ model: 'cap-0', localPath: LLAMA }); // touch: cap-1 is now the LRU
      await new Promise((r) => setTimeout(r, 3));
      const { events } = listen(e, 'model:unloaded');
      await e.loadModel({ model: 'cap-5', localPath: LLAMA });
      expect(events.map((ev) => ev.modelId)).toEqual(['cap-1']); // SHOULD: eviction is announced
      const ids = e.listModels().map((h) => h.descriptor.id);
      expect(ids).toHaveLength(5);
      expect(ids).not.toContain('cap-1');
      expect(ids).toEqual(expect.arrayContaining(['cap-0', 'cap-5']));
      expect((await e.getCacheStats()).loadedModels).toBe(5);
    } finally {
      await e.shutdown();
    }
  });
});

describe('draft models', () => {
  it('loadDraftModel → handle with draft: true, listed; unloadDraftModel() drops the last draft', async () => {
    const e = new Engine();
    try {
      await e.loadModel(LLAMA);
      const d = await e.loadDraftModel({ model: 'draft-1', localPath: LLAMA });
      expect(d.draft).toBe(true);
      expect(d.metadata.draft).toBe(true);
      expect(e.listModels().map((h) => [h.descriptor.id, h.draft])).toEqual([[LLAMA, false], ['draft-1', true]]);
      const { events, off } = listen(e, 'model:unloaded');
      await e.unloadDraftModel();
      off();
      expect(events).toHaveLength(0);
      expect(e.getModelInfo('draft-1')).toBeUndefined();
      expect(e.getModelInfo(LLAMA)).toBeDefined();
    } finally {
      await e.shutdown();
    }
  });

  it('isDraftModelCompatible rejects ModelNotLoaded for unknown ids', async () => {
    const err = await rejectionOf(engine.isDraftModelCompatible('nope-a', 'nope-b'));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelNotLoaded');
  });
});

describe('vision members on a text model reject clearly (§7.12)', () => {
  it('loadVisionModel of a text model → ModelLoadError and an error event', async () => {
    const { events, off } = listen(engine, 'error');
    const err = await rejectionOf(engine.load_vision_model({ model: LLAMA }));
    off();
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelLoadError');
    expect(events).toHaveLength(1);
  });

  it('createVisionGenerator: image checks first, then ModelNotLoaded, thrown from next()', async () => {
    const gen = engine.createVisionGenerator({ model: LLAMA, prompt: 'x', image: [] });
    const empty = await firstNextRejection(gen);
    expect(empty.code).toBe('RuntimeError');
    expect(empty.message).toBe('At least one image is required for vision generation');
    const two = await firstNextRejection(engine.create_vision_generator({
      model: LLAMA, prompt: 'x', image: [{ source: 'a.png' }, { source: 'b.png' }],
    }));
    expect(two.code).toBe('RuntimeError');
    const notVision = await firstNextRejection(engine.createVisionGenerator({
      model: LLAMA, prompt: 'x', image: { source: 'a.png' },
    }));
    expect(notVision.code).toBe('ModelNotLoaded');
  });
});
