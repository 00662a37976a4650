// §15 loading by Hugging Face hub id through the public JS API, against a Node mock hub on
// loopback serving the `llama` fixture: `onProgress` and `model:progress` during the download,
// the cache-only second load under `HF_HUB_OFFLINE=1`, and ModelLoadErrors naming the id.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, tempDir, rejectionOf, collect } from './support/env.mjs';
import { startMockHub } from './support/mock-hub.mjs';

const REPO = 'test-org/tiny-llama';
const COMMIT = '0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c';

let hub;
let cache;
beforeAll(async () => {
  hub = await startMockHub({ repo: REPO, dir: fixture('llama'), commit: COMMIT });
  cache = tempDir();
});
afterAll(async () => {
  await hub.close();
  cache.cleanup();
});

function engineFor(extra = {}) {
  return new Engine({ hub: { endpoint: hub.url, cacheDir: cache.dir, ...extra } });
}

async function withEnv(name, value, fn) {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

describe('hub download with progress', () => {
  it('reports download progress, then load, before model:loaded', async () => {
    const engine = engineFor({ offline: false });
    const seen = [];
    const progress = [];
    engine.on('model:progress', (e) => seen.push(['model:progress', e]));
    engine.on('model:loaded', (e) => seen.push(['model:loaded', e]));
    try {
      const handle = await engine.loadModel({ model: REPO, onProgress: (p) => progress.push(p) });
      expect(handle.descriptor).toMatchObject({ id: REPO, source: 'huggingface' });
      expect(handle.metadata).toMatchObject({ commit: COMMIT, revision: 'main' });

      expect(seen[seen.length - 1][0]).toBe('model:loaded');
      const events = seen.slice(0, -1).map(([name, e]) => {
        expect(name).toBe('model:progress');
        expect(e.modelId).toBe(REPO);
        const { modelId, ...payload } = e;
        return payload;
      });
      expect(events).toEqual(progress);
      expect(progress[progress.length - 1]).toEqual({ phase: 'load' });
      const downloads = progress.slice(0, -1);
      expect(downloads.length).toBeGreaterThan(5);
      for (const p of downloads) {
        expect(p.phase).toBe('download');
        expect(p.totalBytes).toBe(hub.totalBytes);
        expect(typeof p.file).toBe('string');
      }
      const counts = downloads.map((p) => p.loadedBytes);
      for (let i = 1; i < counts.length; i += 1) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]);
      expect(counts[counts.length - 1]).toBe(hub.totalBytes);
      expect(new Set(downloads.map((p) => p.file))).toContain('model.safetensors');

      // The files are in the standard cache layout and the model generates.
      const repoDir = path.join(cache.dir, 'models--test-org--tiny-llama');
      expect(readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8')).toBe(COMMIT);
      expect(existsSync(path.join(repoDir, 'snapshots', COMMIT, 'model.safetensors'))).toBe(true);
      const chunks = await collect(engine.createGenerator({ model: REPO, prompt: 'hello', maxTokens: 3, temperature: 0 }));
      expect(chunks.filter((c) => c.type === 'token')).toHaveLength(3);
    } finally {
      await engine.shutdown();
    }
  });

  it('HF_HUB_OFFLINE=1 loads the cached model with no request and refuses an uncached one', async () => {
    await withEnv('HF_HUB_OFFLINE', '1', async () => {
      const engine = engineFor(); // no `offline` option: the environment decides
      const before = hub.requests.length;
      const progress = [];
      try {
        const handle = await engine.loadModel({ model: REPO, onProgress: (p) => progress.push(p) });
        expect(handle.metadata.commit).toBe(COMMIT);
        expect(progress).toEqual([{ phase: 'load' }]);
        expect(hub.requests.length).toBe(before);

        const errors = [];
        engine.on('error', (e) => errors.push(e));
        const err = await rejectionOf(engine.loadModel('test-org/not-cached'));
        expect(err).toBeInstanceOf(EngineClientError);
        expect(err.code).toBe('ModelLoadError');
        expect(err.message).toContain('test-org/not-cached');
        expect(err.message).toContain('offline');
        expect(errors).toHaveLength(1);
        expect(hub.requests.length).toBe(before);
        expect(engine.getModelInfo(REPO).state).toBe('ready');
      } finally {
        await engine.shutdown();
      }
    });
  });

  it('an id the hub does not have is a ModelLoadError naming it; the engine stays usable', async () => {
    const engine = engineFor({ offline: false });
    try {
      const err = await rejectionOf(engine.loadModel('test-org/missing-model'));
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('ModelLoadError');
      expect(err.message).toContain('test-org/missing-model');
      expect(err.message).toContain('not found');
      const handle = await engine.loadModel({ model: 'local', localPath: fixture('llama') });
      expect(handle.state).toBe('ready');
    } finally {
      await engine.shutdown();
    }
  });

  it('a bad hub option is InvalidParams naming the field', async () => {
    const engine = new Engine({ hub: { offline: 'yes' } });
    const err = await rejectionOf(engine.loadModel(fixture('llama')));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toBe('hub.offline');
  });
});
