// §7 generation protocol against the real addon, on a tiny random-weight fixture (fast; its text
// is meaningless, so assertions are about structure, determinism and control, not content).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, collect, rejectionOf, firstNextRejection, waitFor } from './support/env.mjs';

const LLAMA = fixture('llama');
const QWEN2 = fixture('qwen2');
const PROMPT = 'Once upon a time, in a land far away,';

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(LLAMA);
  await engine.loadModel(QWEN2);
});
afterAll(async () => {
  await engine.shutdown();
});

const tokensOf = (chunks) => chunks.filter((c) => c.type === 'token');
const idsOf = (chunks) => tokensOf(chunks).map((c) => c.tokenId);
const textOf = (chunks) => tokensOf(chunks).map((c) => c.token).join('');
const terminalOf = (chunks) => chunks.filter((c) => c.type !== 'token');
const activeStreams = async () => (await engine.healthCheck()).activeStreams;

function greedy(extra = {}, model = LLAMA) {
  return { model, prompt: PROMPT, temperature: 0, maxTokens: 12, ...extra };
}

/** Drain a generator and check the §7.1 protocol: tokens, then exactly one terminal chunk last. */
async function run(params, options) {
  const chunks = await collect(engine.createGenerator(params, options));
  const terminal = terminalOf(chunks);
  expect(terminal).toHaveLength(1);
  expect(chunks[chunks.length - 1]).toBe(terminal[0]);
  return chunks;
}

describe('call protocol (§7.1)', () => {
  it('createGenerator is sync, returns a real AsyncGenerator and never throws synchronously', async () => {
    const gen = engine.createGenerator(null);
    expect(Object.prototype.toString.call(gen)).toBe('[object AsyncGenerator]');
    expect(typeof gen.next).toBe('function');
    expect(typeof gen.return).toBe('function');
    expect(typeof gen.throw).toBe('function');
    expect(gen[Symbol.asyncIterator]()).toBe(gen);
    const err = await firstNextRejection(gen);
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toBe('root');
  });

  it('return() before the first next() completes without starting any work', async () => {
    const gen = engine.createGenerator(greedy({ maxTokens: 500 }));
    expect(await gen.return(undefined)).toEqual({ done: true, value: undefined });
    expect(await gen.next()).toEqual({ done: true, value: undefined });
    expect(await activeStreams()).toBe(0);
  });

  it.each([
    ['maxTokens 0', { maxTokens: 0 }, 'maxTokens'],
    ['maxTokens 1.5', { maxTokens: 1.5 }, 'maxTokens'],
    ['max_tokens 0 (snake_case; undefined camelCase is absent)', { maxTokens: undefined, max_tokens: 0 }, 'maxTokens'],
    ['maxTokens Infinity', { maxTokens: Number.POSITIVE_INFINITY }, 'maxTokens'],
    ['temperature 2.5', { temperature: 2.5 }, 'temperature'],
    ['temperature NaN', { temperature: Number.NaN }, 'temperature'],
    ["temperature '0.7'", { temperature: '0.7' }, 'temperature'],
    ['topP 1.01', { topP: 1.01 }, 'topP'],
    ['presencePenalty 3', { presencePenalty: 3 }, 'presencePenalty'],
    ["stopSequences 'END'", { stopSequences: 'END' }, 'stopSequences'],
    ['seed -1', { seed: -1 }, 'seed'],
    ["streaming 'yes'", { streaming: 'yes' }, 'streaming'],
    ["model ''", { model: '' }, 'model'],
    ['prompt 42', { prompt: 42 }, 'prompt'],
    ['prompt {foo: 1}', { prompt: { foo: 1 } }, 'prompt'],
  ])('%s → InvalidParams thrown from the first next(), with details.field', async (_l, patch, field) => {
    const events = [];
    engine.on('error', (e) => events.push(e));
    const gen = engine.createGenerator({ ...greedy(), ...patch });
    const err = await firstNextRejection(gen);
    engine.removeAllListeners('error');
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toBe(field);
    expect(err.message).toMatch(new RegExp(`^Validation error on field '${field}': .+`));
    expect(Array.isArray(err.details.issues)).toBe(true);
    expect(events).toHaveLength(0); // generation errors never emit `error`
    expect(await gen.next()).toEqual({ done: true, value: undefined });
  });

  it('structured with a bad format → InvalidParams on a structured.* field', async () => {
    const err = await firstNextRejection(engine.createGenerator({
      ...greedy(), structured: { format: 'xml', schema: {} },
    }));
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toMatch(/^structured/);
  });

  it('unknown model → ModelNotLoaded "Model not loaded: <id>"', async () => {
    const err = await firstNextRejection(engine.createGenerator(greedy({}, 'ghost-model')));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelNotLoaded');
    expect(err.message).toBe('Model not loaded: ghost-model');
  });

  it('unknown passthrough keys are ignored, not rejected', async () => {
    const chunks = await run(greedy({ maxTokens: 2, someFutureOption: { a: 1 }, priority: 'x' }));
    expect(tokensOf(chunks).length).toBeGreaterThan(0);
  });
});

describe('chunks and stats (§7.2, §7.3)', () => {
  let chunks;
  beforeAll(async () => {
    chunks = await run(greedy({ maxTokens: 10 }));
  });

  it('token chunks carry token, integer tokenId, cumulativeText, isFinal, logprob ≤ 0', () => {
    const tokens = tokensOf(chunks);
    expect(tokens.length).toBeGreaterThan(0);
    let text = '';
    for (const c of tokens) {
      expect(typeof c.token).toBe('string');
      expect(Number.isInteger(c.tokenId)).toBe(true);
      expect(c.tokenId).toBeGreaterThanOrEqual(0);
      text += c.token;
      expect(c.cumulativeText).toBe(text);
      expect(typeof c.isFinal).toBe('boolean');
      expect(typeof c.logprob).toBe('number');
      expect(c.logprob).toBeLessThanOrEqual(0);
      for (const v of Object.values(c)) expect(v).not.toBeNull();
    }
  });

  it('exactly one terminal metadata chunk with the GenerationStats fields', () => {
    const [meta] = terminalOf(chunks);
    expect(meta.type).toBe('metadata');
    const s = meta.stats;
    expect(s.tokensGenerated).toBe(tokensOf(chunks).length);
    for (const k of ['tokensPerSecond', 'timeToFirstToken', 'totalTime']) {
      expect(typeof s[k]).toBe('number');
      expect(s[k]).toBeGreaterThanOrEqual(0);
    }
    expect(s.totalTime).toBeGreaterThanOrEqual(s.timeToFirstToken);
    expect(s.totalTime).toBeLessThan(120); // seconds, not ms
    expect(s.modelId).toBe(LLAMA);
    expect(['stop', 'eos', 'length', 'cancelled']).toContain(s.finishReason);
  });

  it('maxTokens is respected: exactly n tokens and finishReason length', async () => {
    for (const n of [1, 5]) {
      const c = await run(greedy({ maxTokens: n }));
      expect(tokensOf(c)).toHaveLength(n);
      expect(terminalOf(c)[0].stats).toMatchObject({ tokensGenerated: n, finishReason: 'length' });
    }
  });

  it('the detached create_generator alias behaves like createGenerator', async () => {
    const alias = engine.create_generator;
    const a = await collect(alias(greedy({ maxTokens: 4 })));
    const b = await run(greedy({ maxTokens: 4 }));
    expect(idsOf(a)).toEqual(idsOf(b));
  });

  it('snake_case params are normalized and camelCase wins', async () => {
    const snake = await run({ model_id: LLAMA, prompt: PROMPT, temperature: 0, max_tokens: 3 });
    expect(tokensOf(snake)).toHaveLength(3);
    const both = await run({ ...greedy(), maxTokens: 2, max_tokens: 6 });
    expect(tokensOf(both)).toHaveLength(2);
    expect(idsOf(both)).toEqual(idsOf(snake).slice(0, 2));
  });
});

describe('sampling controls (§7.6)', () => {
  it('temperature 0 is deterministic (and ignores seed)', async () => {
    const a = await run(greedy());
    const b = await run(greedy());
    const c = await run(greedy({ seed: 1234 }));
    expect(idsOf(a)).toEqual(idsOf(b));
    expect(idsOf(c)).toEqual(idsOf(a));
    expect(textOf(b)).toBe(textOf(a));
  });

  it('the same seed reproduces a sampled sequence; other seeds explore', async () => {
    const params = { model: LLAMA, prompt: PROMPT, temperature: 1.5, maxTokens: 16 };
    const a = idsOf(await run({ ...params, seed: 42 }));
    const b = idsOf(await run({ ...params, seed: 42 }));
    expect(b).toEqual(a);
    const others = [];
    for (const seed of [1, 2, 3, 4]) others.push(idsOf(await run({ ...params, seed })));
    expect(others.some((ids) => JSON.stringify(ids) !== JSON.stringify(a))).toBe(true);
  });

  it('stopSequences end the output before the stop string, which is never yielded', async () => {
    const base = await run(greedy({ maxTokens: 24 }));
    const text = textOf(base);
    // A stop string taken from the middle of the greedy output: greedy ids do not depend on it.
    const points = Array.from(text);
    const mid = Math.floor(points.length / 2);
    const stop = points.slice(mid, mid + 3).join('');
    expect(Array.from(stop)).toHaveLength(3);
    const cut = text.indexOf(stop);
    const chunks = await run(greedy({ maxTokens: 24, stopSequences: ['\u0000never', stop] }));
    const out = textOf(chunks);
    expect(out).toBe(text.slice(0, cut));
    expect(out).not.toContain(stop);
    for (const c of tokensOf(chunks)) expect(c.cumulativeText).not.toContain(stop);
    expect(terminalOf(chunks)[0].stats.finishReason).toBe('stop');
  });

  it('stopTokenIds end generation before that token, which is not yielded or counted', async () => {
    const ids = idsOf(await run(greedy({ maxTokens: 12 })));
    const k = Math.min(4, ids.length - 1);
    const stopId = ids[k];
    const first = ids.indexOf(stopId);
    const chunks = await run(greedy({ maxTokens: 12, stopTokenIds: [stopId] }));
    expect(idsOf(chunks)).toEqual(ids.slice(0, first));
    expect(terminalOf(chunks)[0].stats).toMatchObject({ tokensGenerated: first, finishReason: 'stop' });
  });

  it('penalties and topP are accepted and generation completes', async () => {
    const chunks = await run(greedy({
      maxTokens: 6, temperature: 0.8, topP: 0.9, seed: 7,
      repetitionPenalty: 1.3, presencePenalty: 0.5, frequencyPenalty: 0.5,
    }));
    expect(terminalOf(chunks)[0].type).toBe('metadata');
  });
});

describe('prompt forms (§7.5)', () => {
  it('{tokens} prompt equals the string prompt encoded with addBos', async () => {
    const { tokens } = await engine.tokenize({ model: LLAMA, text: PROMPT, addBos: true });
    const viaText = idsOf(await run(greedy({ maxTokens: 6 })));
    const viaTokens = idsOf(await run(greedy({ maxTokens: 6, prompt: { tokens } })));
    expect(viaTokens).toEqual(viaText);
  });

  it('{template, variables} prompt equals the rendered string', async () => {
    const viaText = idsOf(await run(greedy({ maxTokens: 6 })));
    const viaTemplate = idsOf(await run(greedy({
      maxTokens: 6,
      prompt: { template: 'Once upon a {{ when }}, in a land far {{where}},', variables: { when: 'time', where: 'away' } },
    })));
    expect(viaTemplate).toEqual(viaText);
  });

  it('an empty string prompt is accepted by validation and never breaks the engine', async () => {
    const gen = engine.createGenerator(greedy({ prompt: '', maxTokens: 3 }));
    try {
      const chunks = await collect(gen);
      expect(terminalOf(chunks)).toHaveLength(1);
    } catch (err) {
      expect(err).toBeInstanceOf(EngineClientError);
    }
    expect(tokensOf(await run(greedy({ maxTokens: 2 })))).toHaveLength(2);
  });

  it.each([
    ['an object', { y: 1 }],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
  ])('a template variable holding %s → GenerationError "Template rendering failed: …"', async (_l, bad) => {
    const err = await firstNextRejection(engine.createGenerator(greedy({
      prompt: { template: 'a {{ x }}', variables: { x: bad } },
    })));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('GenerationError');
    expect(err.message).toMatch(/^Template rendering failed: /);
  });

  it('template variables: numbers/booleans are stringified, missing ones render empty', async () => {
    const viaText = idsOf(await run(greedy({ maxTokens: 4, prompt: 'Chapter 3 is true: ' })));
    const viaTemplate = idsOf(await run(greedy({
      maxTokens: 4, prompt: { template: 'Chapter {{n}} is {{b}}: {{missing}}', variables: { n: 3, b: true } },
    })));
    expect(viaTemplate).toEqual(viaText);
  });

  it('out-of-vocabulary token ids → InvalidParams', async () => {
    const err = await firstNextRejection(engine.createGenerator(greedy({ prompt: { tokens: [1, 99999999] } })));
    expect(err.code).toBe('InvalidParams');
  });
});

describe('structured output and draft models (§7.7, §7.8)', () => {
  it('structured JSON: the output parses and matches the schema (details: structured.test.mjs)', async () => {
    const { capabilities } = await engine.getRuntimeInfo();
    expect(capabilities).toContain('guidance');
    const schema = {
      type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 999 } }, required: ['a'], additionalProperties: false,
    };
    const out = JSON.parse(await engine.generate(greedy({ maxTokens: 40, structured: { format: 'json', schema } })));
    expect(Object.keys(out)).toEqual(['a']);
    expect(Number.isInteger(out.a)).toBe(true);
  });

  it("structured format 'yaml' → GuidanceError from the first next()", async () => {
    const err = await firstNextRejection(engine.createGenerator(greedy({ structured: { format: 'yaml', schema: {} } })));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('GuidanceError');
  });

  it('an unknown draftModel id → ModelNotLoaded', async () => {
    const err = await firstNextRejection(engine.createGenerator(greedy({ draftModel: 'no-such-draft' })));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelNotLoaded');
  });

  it('speculative decoding with a draft model is lossless at temperature 0 and reports draft stats', async () => {
    const plainChunks = await run(greedy({ maxTokens: 16 }));
    await engine.loadDraftModel({ model: 'spec-draft', localPath: QWEN2 });
    try {
      for (const numDraftTokens of [1, 3, 8]) {
        const chunks = await run(greedy({ maxTokens: 16, draftModel: 'spec-draft', numDraftTokens }));
        expect(idsOf(chunks)).toEqual(idsOf(plainChunks));
        expect(textOf(chunks)).toBe(textOf(plainChunks));
        const { stats } = terminalOf(chunks)[0];
        expect(stats.tokensGenerated).toBe(16);
        expect(Number.isInteger(stats.draftTokensAccepted)).toBe(true);
        expect(stats.draftTokensProposed).toBeGreaterThan(0);
        expect(stats.draftTokensAccepted).toBeLessThanOrEqual(stats.draftTokensProposed);
        expect(stats.acceptanceRate).toBeCloseTo(stats.draftTokensAccepted / stats.draftTokensProposed, 10);
      }
      // the draft equal to the target's own weights is always accepted
      await engine.loadDraftModel({ model: 'spec-self', localPath: LLAMA });
      const self = terminalOf(await run(greedy({ maxTokens: 16, draftModel: 'spec-self' })))[0].stats;
      expect(self.acceptanceRate).toBeGreaterThan(0.9);
      // without a draft the keys are absent
      const plain = terminalOf(plainChunks)[0].stats;
      expect('draftTokensAccepted' in plain || 'acceptanceRate' in plain).toBe(false);
    } finally {
      await engine.unloadModel('spec-draft');
      await engine.unloadModel('spec-self').catch(() => {});
    }
  });

  it('unloading the draft mid-stream ends that stream with an error chunk', async () => {
    await engine.loadDraftModel({ model: 'spec-gone', localPath: QWEN2 });
    const gen = engine.createGenerator(greedy({ maxTokens: 4000, draftModel: 'spec-gone' }));
    const first = await gen.next();
    expect(first.value.type).toBe('token');
    await engine.unloadModel('spec-gone');
    const rest = [];
    for await (const c of gen) rest.push(c);
    const last = rest[rest.length - 1];
    expect(last.type).toBe('error');
    expect(last.error.message).toContain('Draft model spec-gone was unloaded');
    expect(await waitFor(async () => (await activeStreams()) === 0)).toBe(true);
  });
});

describe('cancellation, abort, timeout (§7.9)', () => {
  it('break stops the stream and frees its slot', async () => {
    let n = 0;
    for await (const c of engine.createGenerator(greedy({ maxTokens: 400 }))) {
      expect(c.type).toBe('token');
      n += 1;
      if (n === 2) break;
    }
    expect(await waitFor(async () => (await activeStreams()) === 0)).toBe(true);
  });

  it('return() mid-stream resolves done and later next() stays done', async () => {
    const gen = engine.createGenerator(greedy({ maxTokens: 400 }));
    expect((await gen.next()).done).toBe(false);
    expect(await activeStreams()).toBe(1);
    expect(await gen.return(undefined)).toEqual({ done: true, value: undefined });
    expect(await gen.next()).toEqual({ done: true, value: undefined });
    expect(await waitFor(async () => (await activeStreams()) === 0)).toBe(true);
  });

  it('an already aborted signal: first next() rejects Cancelled, no tokens, no stream', async () => {
    const gen = engine.createGenerator(greedy(), { signal: AbortSignal.abort() });
    const err = await firstNextRejection(gen);
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('Cancelled');
    expect(await activeStreams()).toBe(0);
  });

  it('abort mid-stream: one error chunk (Cancelled), then done; slot freed', async () => {
    const controller = new AbortController();
    const chunks = [];
    for await (const c of engine.createGenerator(greedy({ maxTokens: 400 }), { signal: controller.signal })) {
      chunks.push(c);
      if (chunks.length === 2) controller.abort();
    }
    const terminal = terminalOf(chunks);
    expect(terminal).toHaveLength(1);
    expect(terminal[0].type).toBe('error');
    expect(['Cancelled', 'GenerationError']).toContain(terminal[0].error.code);
    expect(tokensOf(chunks).length).toBeLessThan(100);
    expect(await waitFor(async () => (await activeStreams()) === 0)).toBe(true);
  });

  it('a long-lived signal reused by many streams accumulates no listeners', async () => {
    const controller = new AbortController();
    const warnings = [];
    const onWarning = (w) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 15; i += 1) {
        const chunks = await run(greedy({ maxTokens: 1 }), { signal: controller.signal });
        expect(terminalOf(chunks)[0].type).toBe('metadata');
      }
      for (let i = 0; i < 15; i += 1) {
        for await (const c of engine.createGenerator(greedy({ maxTokens: 50 }), { signal: controller.signal })) {
          expect(c.type).toBe('token');
          break;
        }
      }
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    // Aborting now must not touch any finished stream.
    controller.abort();
    expect(await activeStreams()).toBe(0);
  });

  it('a small timeoutMs yields one Timeout error chunk "Stream <id> timed out"', async () => {
    const chunks = await run(greedy({ maxTokens: 400 }), { timeoutMs: 1, streamId: 'timeout-test-1' });
    const [terminal] = terminalOf(chunks);
    expect(terminal.type).toBe('error');
    expect(terminal.error.code).toBe('Timeout');
    expect(terminal.error.message).toBe('Stream timeout-test-1 timed out');
    expect(await waitFor(async () => (await activeStreams()) === 0)).toBe(true);
  });

  it('a generous timeoutMs and a priority hint are accepted', async () => {
    const chunks = await run(greedy({ maxTokens: 3 }), { timeoutMs: 60_000, priority: 'background' });
    expect(terminalOf(chunks)[0].type).toBe('metadata');
  });

  it('the engine stays usable and deterministic after aborts and timeouts (§10.3)', async () => {
    const before = idsOf(await run(greedy()));
    await run(greedy({ maxTokens: 400 }), { timeoutMs: 1 });
    const after = idsOf(await run(greedy()));
    expect(after).toEqual(before);
    expect(engine.getModelInfo(LLAMA)?.state).toBe('ready');
  });
});

describe('concurrency (§7.6, §7.10)', () => {
  it('concurrent generators all complete with the same ids as when run alone', async () => {
    const a = greedy({ maxTokens: 10 });
    const b = greedy({ maxTokens: 7, prompt: 'A completely different prompt' }, QWEN2);
    const c = { model: LLAMA, prompt: 'Third', temperature: 1, seed: 9, maxTokens: 8 };
    const alone = [];
    for (const p of [a, b, c]) alone.push(idsOf(await run(p)));
    const together = await Promise.all([a, b, c].map((p) => run(p)));
    together.forEach((chunks, i) => {
      expect(terminalOf(chunks)[0].type).toBe('metadata');
      expect(idsOf(chunks)).toEqual(alone[i]);
    });
    expect(await activeStreams()).toBe(0);
  });

  it('more than 10 concurrent streams still all complete (queued, not failed)', async () => {
    const all = await Promise.all(Array.from({ length: 12 }, (_, i) => collect(
      engine.createGenerator(greedy({ maxTokens: 3, prompt: `prompt ${i}` })),
    )));
    for (const chunks of all) {
      const t = terminalOf(chunks);
      expect(t).toHaveLength(1);
      expect(t[0].type).toBe('metadata');
    }
  });
});

describe('generate() (§7.4)', () => {
  it('returns the concatenated token text', async () => {
    const chunks = await run(greedy({ maxTokens: 8 }));
    const text = await engine.generate(greedy({ maxTokens: 8 }));
    expect(text).toBe(textOf(chunks));
    expect(text).toBe(tokensOf(chunks).at(-1).cumulativeText);
  });

  it('an error chunk becomes a thrown EngineClientError', async () => {
    const err = await rejectionOf(engine.generate(greedy({ maxTokens: 400 }), { timeoutMs: 1 }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('Timeout');
    expect(err.details.engineError).toMatchObject({ code: 'Timeout' });
  });

  it('validation errors propagate unchanged', async () => {
    const err = await rejectionOf(engine.generate({ model: LLAMA, prompt: 'x', maxTokens: -1 }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
  });
});
