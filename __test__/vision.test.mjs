// §7.12 vision: loadVisionModel / createVisionGenerator against the real addon with the tiny
// random-weight Qwen2-VL, Qwen2.5-VL and LLaVA fixtures (scripts/vision/make_vision_fixtures.py; npm
// test builds them and mlx-vlm's references): greedy ids equal mlx-vlm's through the engine,
// image source forms, streaming + one metadata chunk, thrown failures with the spec's codes,
// cancellation, text-only generation on the vision model, and a text model side by side.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, CACHE, FIXTURES, tempDir, collect, rejectionOf, firstNextRejection } from './support/env.mjs';

const VLM = fixture('vision/qwen2-vl');
const VLM25 = fixture('vision/qwen2_5-vl');
const LLAVA = fixture('vision/llava');
const LLAMA = fixture('llama');
const IMAGES = path.join(FIXTURES, 'vision', 'images');
const SCENE = path.join(IMAGES, 'scene.png');
const PROMPT = 'Describe this image.';

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadVisionModel({ model: VLM });
});
afterAll(async () => {
  await engine.shutdown();
});

async function ids(params) {
  const chunks = await collect(engine.createVisionGenerator(params));
  return chunks.filter((c) => c.type === 'token').map((c) => c.tokenId);
}

function listen(e, name) {
  const events = [];
  const fn = (ev) => events.push(ev);
  e.on(name, fn);
  return { events, off: () => e.off(name, fn) };
}

describe('loadVisionModel', () => {
  it('returns a vision handle and emits model:loaded', async () => {
    const { events, off } = listen(engine, 'model:loaded');
    const handle = await engine.load_vision_model({ model: VLM });
    off();
    expect(handle.descriptor).toMatchObject({ id: VLM, modality: 'vision', family: 'mlx-vlm' });
    expect(handle.descriptor.maxImageSize).toBeGreaterThan(0);
    expect(handle.metadata).toMatchObject({
      isVisionModel: true, supportedFormats: ['png', 'jpg', 'jpeg', 'webp'], maxBatchSize: 1,
    });
    expect(typeof handle.metadata.processorType).toBe('string');
    expect(events).toHaveLength(1);
    expect(engine.getModelInfo(VLM).descriptor.modality).toBe('vision');
  });

  it('a missing folder is a ModelLoadError with an error event', async () => {
    const { events, off } = listen(engine, 'error');
    const err = await rejectionOf(engine.loadVisionModel({ model: '/no/such/vlm' }));
    off();
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelLoadError');
    expect(events).toHaveLength(1);
  });
});

describe('greedy parity with mlx-vlm through the engine', () => {
  const families = [['qwen2-vl', VLM, 'qwen2_vl'], ['qwen2_5-vl', VLM25, 'qwen2_5_vl'], ['llava', LLAVA, 'llava']];
  for (const [name, model, modelType] of families) {
    it(`${name}: 32 greedy ids per reference case equal mlx-vlm's`, async () => {
      const ref = JSON.parse(readFileSync(path.join(CACHE, 'parity', 'vision', `${name}.json`), 'utf8'));
      const handle = await engine.loadVisionModel({ model });
      expect(handle.descriptor.imageEncoder).toBe(modelType);
      expect(handle.metadata.modelType).toBe(modelType);
      expect(ref.cases.length).toBeGreaterThan(0);
      for (const c of ref.cases) {
        const got = await ids({ model, prompt: c.prompt, image: { source: path.join(IMAGES, c.image) }, maxTokens: c.greedy_ids.length });
        expect(got, `${name}/${c.name}`).toEqual(c.greedy_ids);
      }
    });
  }
});

describe('createVisionGenerator', () => {
  it('streams token chunks then exactly one metadata chunk', async () => {
    const chunks = await collect(engine.createVisionGenerator({
      model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 8,
    }));
    const tokens = chunks.filter((c) => c.type === 'token');
    expect(tokens).toHaveLength(8);
    for (const t of tokens) expect(typeof t.token).toBe('string');
    expect(chunks.at(-1).type).toBe('metadata');
    expect(chunks.filter((c) => c.type === 'metadata')).toHaveLength(1);
    const { stats } = chunks.at(-1);
    expect(stats.tokensGenerated).toBe(8);
    expect(stats.totalTime).toBeGreaterThanOrEqual(stats.timeToFirstToken);
    expect(stats.tokensPerSecond).toBeGreaterThanOrEqual(0);
  });

  it('is greedy by default and equal for every source form of the same image', async () => {
    const bytes = readFileSync(SCENE);
    const b64 = bytes.toString('base64');
    const base = { model: VLM, prompt: PROMPT, maxTokens: 6 };
    const fromPath = await ids({ ...base, image: { source: SCENE } });
    expect(fromPath).toHaveLength(6);
    expect(await ids({ ...base, image: [{ source: SCENE }] })).toEqual(fromPath);
    expect(await ids({ ...base, image: { source: bytes } })).toEqual(fromPath);
    expect(await ids({ ...base, image: { source: `data:image/png;base64,${b64}` } })).toEqual(fromPath);
    expect(await ids({ ...base, image: { source: b64 } })).toEqual(fromPath);
    // the lossless WebP holds the same pixels
    expect(await ids({ ...base, image: { source: path.join(IMAGES, 'scene.webp') } })).toEqual(fromPath);
    // a different picture changes the answer
    expect(await ids({ ...base, image: { source: path.join(IMAGES, 'big.png') } })).not.toEqual(fromPath);
  });

  it('reads http images from a loopback server; an unreachable URL is thrown', async () => {
    const png = readFileSync(SCENE);
    const server = http.createServer((req, res) => {
      if (req.url === '/scene.png') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(png);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    try {
      const base = { model: VLM, prompt: PROMPT, maxTokens: 4 };
      const local = await ids({ ...base, image: { source: SCENE } });
      expect(await ids({ ...base, image: { source: `http://127.0.0.1:${port}/scene.png` } })).toEqual(local);
      const missing = await firstNextRejection(engine.createVisionGenerator({
        ...base, image: { source: `http://127.0.0.1:${port}/missing.png` },
      }));
      expect(missing.code).toBe('GenerationError');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // nothing listens there any more
    const refused = await firstNextRejection(engine.createVisionGenerator({
      model: VLM, prompt: PROMPT, image: { source: `http://127.0.0.1:${port}/scene.png` },
    }));
    expect(refused).toBeInstanceOf(EngineClientError);
    expect(refused.code).toBe('GenerationError');
  });

  it('bad input is thrown with the spec codes and the engine stays usable', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const truncated = path.join(dir, 'truncated.png');
      writeFileSync(truncated, readFileSync(SCENE).subarray(0, 200));
      const text = path.join(dir, 'notes.png');
      writeFileSync(text, 'this is not an image at all');
      // a PNG header claiming 30000x30000 (refused from the header, nothing decoded)
      const huge = Buffer.from(readFileSync(SCENE));
      huge.writeUInt32BE(30000, 16);
      huge.writeUInt32BE(30000, 20);
      const base = { model: VLM, prompt: PROMPT, maxTokens: 2 };
      const cases = [
        [{ ...base, image: [] }, 'RuntimeError'],
        [{ ...base, image: [{ source: SCENE }, { source: SCENE }] }, 'RuntimeError'],
        [{ ...base, image: { source: truncated } }, 'GenerationError'],
        [{ ...base, image: { source: text } }, 'GenerationError'],
        [{ ...base, image: { source: huge } }, 'GenerationError'],
        [{ ...base, image: { source: '/no/such/picture.png' } }, 'GenerationError'],
        [{ ...base, model: LLAMA, image: { source: SCENE } }, 'ModelNotLoaded'],
        [{ ...base, model: 'never-loaded', image: { source: SCENE } }, 'ModelNotLoaded'],
      ];
      for (const [params, code] of cases) {
        const { events, off } = listen(engine, 'error');
        const err = await firstNextRejection(engine.createVisionGenerator(params));
        off();
        expect(err).toBeInstanceOf(EngineClientError);
        expect(err.code, JSON.stringify(params.image)).toBe(code);
        expect(events).toHaveLength(1);
      }
    } finally {
      cleanup();
    }
    expect((await ids({ model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 2 }))).toHaveLength(2);
    expect((await engine.healthCheck()).activeStreams).toBe(0);
  });

  it('break frees the stream slot; an abort is thrown as Cancelled', async () => {
    const gen = engine.createVisionGenerator({ model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 50 });
    for await (const chunk of gen) {
      expect(chunk.type).toBe('token');
      break;
    }
    expect((await engine.healthCheck()).activeStreams).toBe(0);
    const ac = new AbortController();
    const aborted = engine.createVisionGenerator(
      { model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 200 }, { signal: ac.signal },
    );
    const first = await aborted.next();
    expect(first.value.type).toBe('token');
    ac.abort();
    const err = await rejectionOf((async () => {
      for (;;) {
        const { done } = await aborted.next();
        if (done) throw new Error('ended without the cancellation');
      }
    })());
    expect(err.code).toBe('Cancelled');
    expect((await engine.healthCheck()).activeStreams).toBe(0);
  });

  it('runs beside a text model; text generation on the vision model uses its language model', async () => {
    await engine.loadModel(LLAMA);
    const [vision, text, lmOnly] = await Promise.all([
      ids({ model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 5 }),
      collect(engine.createGenerator({ model: LLAMA, prompt: 'Hello', maxTokens: 5, temperature: 0 })),
      collect(engine.createGenerator({ model: VLM, prompt: 'Hello', maxTokens: 5, temperature: 0 })),
    ]);
    expect(vision).toEqual(await ids({ model: VLM, prompt: PROMPT, image: { source: SCENE }, maxTokens: 5 }));
    expect(text.filter((c) => c.type === 'token')).toHaveLength(5);
    expect(lmOnly.filter((c) => c.type === 'token')).toHaveLength(5);
    expect(lmOnly.at(-1).type).toBe('metadata');
  });
});
