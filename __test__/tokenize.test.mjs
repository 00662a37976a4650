// §5.3 / §8.2 tokenize, §6.3 validation — against the real addon.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, rejectionOf } from './support/env.mjs';

const LLAMA = fixture('llama');
const QWEN2 = fixture('qwen2');

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(LLAMA);
  await engine.loadModel(QWEN2);
});
afterAll(async () => {
  await engine.shutdown();
});

function vocab(dir) {
  const tok = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const byId = new Map();
  for (const [piece, id] of Object.entries(tok.model.vocab)) byId.set(id, piece);
  for (const t of tok.added_tokens ?? []) byId.set(t.id, t.content);
  return byId;
}

describe('tokenize', () => {
  it('returns integer tokens and same-length tokenStrings from the vocabulary', async () => {
    const res = await engine.tokenize({ model: LLAMA, text: 'Hello world, hello tokens!' });
    expect(Array.isArray(res.tokens)).toBe(true);
    expect(res.tokens.length).toBeGreaterThan(2);
    for (const t of res.tokens) expect(Number.isInteger(t) && t >= 0).toBe(true);
    expect(res.tokenStrings).toHaveLength(res.tokens.length);
    const byId = vocab(LLAMA);
    res.tokens.forEach((id, i) => expect(res.tokenStrings[i]).toBe(byId.get(id)));
  });

  it('is deterministic, and different texts give different tokens', async () => {
    const a = await engine.tokenize({ model: QWEN2, text: 'The quick brown fox' });
    const b = await engine.tokenize({ model: QWEN2, text: 'The quick brown fox' });
    const c = await engine.tokenize({ model: QWEN2, text: 'jumps over the lazy dog' });
    expect(b).toEqual(a);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it('addBos false never yields more tokens than the default; aliases agree', async () => {
    const text = 'Hello there';
    const withBos = await engine.tokenize({ model: LLAMA, text });
    const explicit = await engine.tokenize({ model: LLAMA, text, addBos: true });
    const without = await engine.tokenize({ model: LLAMA, text, addBos: false });
    const snake = await engine.tokenize({ model: LLAMA, text, add_bos: false });
    const special = await engine.tokenize({ model: LLAMA, text, add_special_tokens: false });
    const camelWins = await engine.tokenize({ model: LLAMA, text, addBos: true, add_bos: false });
    expect(explicit).toEqual(withBos);
    expect(snake).toEqual(without);
    expect(special).toEqual(without);
    expect(camelWins).toEqual(withBos);
    expect(without.tokens.length).toBeLessThanOrEqual(withBos.tokens.length);
    expect(withBos.tokens.slice(withBos.tokens.length - without.tokens.length)).toEqual(without.tokens);
  });

  it('model_id is accepted as the model alias', async () => {
    const a = await engine.tokenize({ model_id: QWEN2, text: 'abc' });
    const b = await engine.tokenize({ model: QWEN2, text: 'abc' });
    expect(a).toEqual(b);
  });

  it('concurrent tokenize calls each get their own correct result', async () => {
    const texts = Array.from({ length: 12 }, (_, i) => `sentence number ${i} ${'x'.repeat(i)}`);
    const sequential = [];
    for (const text of texts) sequential.push(await engine.tokenize({ model: LLAMA, text }));
    const concurrent = await Promise.all(texts.map((text) => engine.tokenize({ model: LLAMA, text })));
    expect(concurrent).toEqual(sequential);
  });

  it('empty text is allowed by the engine (§6.3): at most the special tokens', async () => {
    const res = await engine.tokenize({ model: LLAMA, text: '' });
    const without = await engine.tokenize({ model: LLAMA, text: '', addBos: false });
    expect(without.tokens).toEqual([]);
    expect(res.tokens.length).toBeLessThanOrEqual(2);
    expect(res.tokenStrings).toHaveLength(res.tokens.length);
  });

  it('handles non-ASCII text', async () => {
    const res = await engine.tokenize({ model: QWEN2, text: 'héllo 世界 🙂' });
    expect(res.tokens.length).toBeGreaterThan(0);
    expect(res.tokenStrings).toHaveLength(res.tokens.length);
  });
});

describe('tokenize errors (no error event)', () => {
  it('unknown model → ModelNotLoaded with the original message', async () => {
    const events = [];
    engine.on('error', (e) => events.push(e));
    const err = await rejectionOf(engine.tokenize({ model: 'not-loaded', text: 'x' }));
    engine.removeAllListeners('error');
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelNotLoaded');
    expect(err.message).toBe('Model not-loaded must be loaded before tokenization');
    expect(events).toHaveLength(0);
  });

  it.each([
    ['missing text', { model: LLAMA }, 'text'],
    ['non-string text', { model: LLAMA, text: 42 }, 'text'],
    ['empty model', { model: '', text: 'x' }, 'model'],
    ['non-boolean addBos', { model: LLAMA, text: 'x', addBos: 'yes' }, 'addBos'],
  ])('%s → InvalidParams with details.field', async (_label, req, field) => {
    const events = [];
    engine.on('error', (e) => events.push(e));
    const err = await rejectionOf(engine.tokenize(req));
    engine.removeAllListeners('error');
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toBe(field);
    expect(err.message).toMatch(new RegExp(`^Validation error on field '${field}': `));
    expect(events).toHaveLength(0);
  });

  it('null request → InvalidParams (field root)', async () => {
    const err = await rejectionOf(engine.tokenize(null));
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toBe('root');
  });
});
