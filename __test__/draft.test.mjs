// §7.8 / §8.5 isDraftModelCompatible (computed natively) and the batch entry points behind the
// `batch_check_draft` / `batch_tokenize` capabilities (§8.3), against the real addon.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Engine, EngineClientError, batchTokenize } from 'mlx-serving';
import {
  ROOT, require, fixture, defaultModel, copyFixture, rejectionOf,
} from './support/env.mjs';

const LLAMA = fixture('llama');
const QWEN2 = fixture('qwen2');
const BIG = defaultModel();

let engine;
let extraVocab;
const params = {};
beforeAll(async () => {
  engine = new Engine();
  params.big = (await engine.loadModel(BIG)).metadata.parameterCount;
  params.tiny = (await engine.loadDraftModel({ model: 'tiny', localPath: LLAMA })).metadata.parameterCount;
  params.qwen = (await engine.loadModel({ model: 'qwen', localPath: QWEN2 })).metadata.parameterCount;
  // The llama fixture with one more added token: a different vocabulary size.
  extraVocab = copyFixture('llama');
  const tokPath = path.join(extraVocab.dir, 'tokenizer.json');
  const tok = JSON.parse(readFileSync(tokPath, 'utf8'));
  tok.added_tokens.push({
    id: 49152, content: '<|extra|>', single_word: false, lstrip: false, rstrip: false,
    normalized: false, special: true,
  });
  writeFileSync(tokPath, JSON.stringify(tok));
  await engine.loadModel({ model: 'tiny-plus', localPath: extraVocab.dir });
}, 120_000);
afterAll(async () => {
  await engine.shutdown();
  extraVocab?.cleanup();
});

function listen(name) {
  const events = [];
  const fn = (ev) => events.push(ev);
  engine.on(name, fn);
  return { events, off: () => engine.off(name, fn) };
}

/** The §7.8 estimate, computed the way the spec states it. */
function estimate(primary, draft, compatible) {
  const speedup = primary > 0 && draft > 0 ? 1 + (1 - draft / primary) * 0.3 : 1;
  return {
    expectedSpeedup: `${speedup.toFixed(2)}x`,
    sizeRatio: primary > 0 ? `${((draft / primary) * 100).toFixed(1)}%` : 'N/A',
    recommendation: compatible && draft < primary * 0.5 ? 'Good pairing' : 'May not provide significant speedup',
  };
}

describe('isDraftModelCompatible (§7.8, §8.5)', () => {
  it('a small draft of the same family: compatible, exact details, good pairing', async () => {
    const report = await engine.isDraftModelCompatible(BIG, 'tiny');
    expect(report.compatible).toBe(true);
    expect(report.errors).toEqual([]);
    expect(report.warnings.filter((w) => /Architecture|not smaller|Vocabulary/.test(w))).toEqual([]);
    expect(report.details).toEqual({
      primaryModel: { id: BIG, vocabSize: 49152, parameterCount: params.big, architecture: 'llama' },
      draftModel: { id: 'tiny', vocabSize: 49152, parameterCount: params.tiny, architecture: 'llama' },
      performanceEstimate: estimate(params.big, params.tiny, true),
    });
    expect(report.details.performanceEstimate.recommendation).toBe('Good pairing');
  });

  it('the snake_case alias works detached and gives the same report', async () => {
    const check = engine.is_draft_model_compatible;
    expect(await check(BIG, 'tiny')).toEqual(await engine.isDraftModelCompatible(BIG, 'tiny'));
  });

  it('architecture mismatch is a warning (config.json model_type), not an error', async () => {
    const report = await engine.isDraftModelCompatible('tiny', 'qwen');
    expect(report.compatible).toBe(true);
    expect(report.warnings).toContain(
      'Architecture mismatch: primary=llama, draft=qwen2. Different architectures may have compatibility issues.',
    );
    expect(report.details.draftModel.architecture).toBe('qwen2');
  });

  it('a draft that is not smaller is a warning with grouped counts', async () => {
    const report = await engine.isDraftModelCompatible('tiny', BIG);
    expect(report.compatible).toBe(true);
    const fmt = (n) => n.toLocaleString('en-US');
    expect(report.warnings).toContain(
      `Draft model is not smaller than primary: draft=${fmt(params.big)}, primary=${fmt(params.tiny)}. `
      + 'Expected performance gain may not materialize.',
    );
    expect(report.details.performanceEstimate).toEqual(estimate(params.tiny, params.big, true));
    expect(report.details.performanceEstimate.recommendation).toBe('May not provide significant speedup');
  });

  it('a vocabulary size mismatch is an error: compatible false', async () => {
    const report = await engine.isDraftModelCompatible(BIG, 'tiny-plus');
    expect(report.compatible).toBe(false);
    expect(report.errors).toEqual([
      'Vocabulary size mismatch: primary=49152, draft=49153. Speculative decoding requires identical vocabulary.',
    ]);
    expect(report.details.draftModel.vocabSize).toBe(49153);
    expect(report.details.performanceEstimate.recommendation).toBe('May not provide significant speedup');
  });

  it('an id that is not loaded → ModelNotLoaded naming it, one error event, engine usable', async () => {
    const { events, off } = listen('error');
    const a = await rejectionOf(engine.isDraftModelCompatible('no-such-primary', 'tiny'));
    const b = await rejectionOf(engine.is_draft_model_compatible(BIG, 'no-such-draft'));
    off();
    for (const [err, id] of [[a, 'no-such-primary'], [b, 'no-such-draft']]) {
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('ModelNotLoaded');
      expect(err.message).toBe(`Model not loaded: ${id}`);
    }
    expect(events.map((e) => [e.error.code, e.context])).toEqual([
      ['ModelNotLoaded', 'isDraftModelCompatible'], ['ModelNotLoaded', 'isDraftModelCompatible'],
    ]);
    expect((await engine.isDraftModelCompatible(BIG, 'tiny')).compatible).toBe(true);
  });

  it('non-string ids → InvalidParams naming the argument', async () => {
    for (const [args, field] of [[[42, 'tiny'], 'primaryId'], [[BIG, undefined], 'draftId'], [['', 'tiny'], 'primaryId']]) {
      const err = await rejectionOf(engine.isDraftModelCompatible(...args));
      expect(err).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('InvalidParams');
      expect(err.details.field).toBe(field);
    }
  });

  it('concurrent checks (one batched round trip) each settle on their own', async () => {
    const results = await Promise.allSettled([
      engine.isDraftModelCompatible(BIG, 'tiny'),
      engine.isDraftModelCompatible(BIG, 'missing'),
      engine.isDraftModelCompatible(BIG, 'tiny-plus'),
      engine.isDraftModelCompatible(null, 'tiny'),
      engine.isDraftModelCompatible('tiny', 'qwen'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect(results[0].value).toEqual(await engine.isDraftModelCompatible(BIG, 'tiny'));
    expect(results[1].reason).toBeInstanceOf(EngineClientError);
    expect(results[1].reason.code).toBe('ModelNotLoaded');
    expect(results[2].value.compatible).toBe(false);
    expect(results[3].reason.code).toBe('InvalidParams');
    expect(results[4].value.details.draftModel.id).toBe('qwen');
  });

  it('an unloaded model is no longer checkable', async () => {
    const e = new Engine();
    try {
      await e.loadModel(LLAMA);
      await e.loadDraftModel({ model: 'd', localPath: LLAMA });
      expect((await e.isDraftModelCompatible(LLAMA, 'd')).compatible).toBe(true);
      await e.unloadDraftModel('d');
      expect((await rejectionOf(e.isDraftModelCompatible(LLAMA, 'd'))).code).toBe('ModelNotLoaded');
    } finally {
      await e.shutdown();
    }
  });
});

describe('capabilities and batch paths (§8.3 batch_tokenize, batch_check_draft)', () => {
  it('capabilities list check_draft, batch_check_draft and batch_tokenize', async () => {
    const { capabilities } = await engine.getRuntimeInfo();
    expect(capabilities).toEqual(expect.arrayContaining(['check_draft', 'batch_check_draft', 'batch_tokenize']));
  });

  it('same-tick tokenize calls (batched) match one-by-one results; failures stay isolated', async () => {
    const texts = ['Hello world', '', 'The quick brown fox', 'héllo — ünïcode ✓'];
    const alone = [];
    for (const text of texts) alone.push((await engine.tokenize({ model: BIG, text })).tokens);
    const { events, off } = listen('error');
    const results = await Promise.allSettled([
      ...texts.map((text) => engine.tokenize({ model: BIG, text })),
      engine.tokenize({ model: 'not-loaded', text: 'x' }),
      engine.tokenize({ model: BIG, text: 42 }),
      engine.tokenize({ model_id: 'tiny', text: 'Hello world', add_bos: false }),
    ]);
    off();
    expect(results.slice(0, 4).map((r) => r.value.tokens)).toEqual(alone);
    expect(results[4].reason).toBeInstanceOf(EngineClientError);
    expect(results[4].reason.code).toBe('ModelNotLoaded');
    expect(results[4].reason.message).toBe('Model not-loaded must be loaded before tokenization');
    expect(results[5].reason.code).toBe('InvalidParams');
    expect(results[5].reason.details.field).toBe('text');
    expect(results[6].value.tokens).toEqual((await engine.tokenize({ model: 'tiny', text: 'Hello world', addBos: false })).tokens);
    expect(events).toEqual([]); // §9.2: tokenize validation / ModelNotLoaded are not announced
  });

  it('batchTokenize helper returns one token array per text, in order', async () => {
    const texts = ['a', 'bb', 'ccc dd'];
    const batched = await batchTokenize(engine, BIG, texts);
    const expected = [];
    for (const text of texts) expected.push((await engine.tokenize({ model: BIG, text })).tokens);
    expect(batched).toEqual(expected);
  });

  it('the native batch entry points answer per entry, in order, in one call', async () => {
    const { NativeEngine } = require(path.join(ROOT, 'native.cjs'));
    const ne = new NativeEngine();
    try {
      await ne.start();
      await ne.loadModel({ model: 'p', localPath: LLAMA });
      await ne.loadModel({ model: 'q', localPath: QWEN2 });
      const drafts = await ne.checkDraftCompatibilityBatch([
        { primaryId: 'p', draftId: 'q' }, { primary_id: 'p', draft_id: 'zzz' }, { primaryId: 3 },
      ]);
      expect(drafts.map((d) => d.success)).toEqual([true, false, false]);
      expect(drafts[0].result.details.primaryModel.id).toBe('p');
      expect(drafts[1].error).toMatchObject({ code: 'ModelNotLoaded', message: 'Model not loaded: zzz' });
      expect(drafts[2].error).toMatchObject({ code: 'InvalidParams', details: { field: 'primaryId' } });
      const toks = await ne.tokenizeBatch([{ model: 'p', text: 'hi' }, { model: 'p' }, { model: 'nope', text: 'x' }]);
      expect(toks.map((t) => t.success)).toEqual([true, false, false]);
      expect(toks[0].result).toEqual(await ne.tokenize({ model: 'p', text: 'hi' }));
      expect(toks[1].error).toMatchObject({ code: 'InvalidParams', details: { field: 'text' } });
      expect(toks[2].error.code).toBe('ModelNotLoaded');
      expect(await ne.tokenizeBatch([])).toEqual([]);
      const notArray = await rejectionOf(ne.tokenizeBatch({ model: 'p', text: 'x' }));
      expect(JSON.parse(notArray.message)).toMatchObject({ code: 'InvalidParams', details: { field: 'requests' } });
    } finally {
      await ne.shutdown();
    }
  });
});
