// Spec §6: every row of the validation table, through the public API against the real addon.
// Each bad request must reject with InvalidParams naming the field (`details.field`, and the
// "Validation error on field '<field>': …" message), load/start nothing, fire no event other
// than the spec's (loadModel: one `error`; createGenerator/tokenize: none), and leave the engine
// working: the next valid call succeeds.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Engine, EngineClientError } from 'mlx-serving';
import { fixture, rejectionOf, firstNextRejection, collect } from './support/env.mjs';

const LLAMA = fixture('llama');
const OK = { model: LLAMA, prompt: 'Hello', temperature: 0, maxTokens: 2 };

let engine;
let seen = [];
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(LLAMA);
  // Record every event the engine emits (eventemitter3: emit is the single funnel).
  const emit = engine.emit.bind(engine);
  engine.emit = (name, ...args) => {
    seen.push({ name, payload: args[0] });
    return emit(name, ...args);
  };
});
afterAll(async () => {
  await engine.shutdown();
});

function expectInvalid(err, field, { issues = true } = {}) {
  expect(err).toBeInstanceOf(EngineClientError);
  expect(err.code).toBe('InvalidParams');
  expect(err.details.field).toBe(field);
  expect(err.message.startsWith(`Validation error on field '${field}': `)).toBe(true);
  // §6's `details.issues` (Zod-style) belongs to the request-body rules; stream options are
  // not in the §6 table and carry only `field`.
  if (issues) expect(Array.isArray(err.details.issues)).toBe(true);
}

async function expectGenerationWorks() {
  const chunks = await collect(engine.createGenerator(OK));
  expect(chunks[chunks.length - 1].type).toBe('metadata');
  expect((await engine.healthCheck()).activeStreams).toBe(0);
}

// §6.1 (after §5.1 normalization) + the §6.1 second-stage runtime limits + §15 additions.
const GENERATOR_ROWS = [
  ['model', { model: '' }], ['model', { model: undefined }], ['model', { model: 123 }],
  ['prompt', { prompt: 42 }], ['prompt', { prompt: null }], ['prompt', { prompt: { foo: 1 } }],
  ['prompt', { prompt: undefined }],
  ['maxTokens', { maxTokens: 0 }], ['maxTokens', { maxTokens: -1 }], ['maxTokens', { maxTokens: 1.5 }],
  ['maxTokens', { maxTokens: '10' }], ['maxTokens', { maxTokens: 100001 }],
  ['maxTokens', { maxTokens: undefined, max_tokens: 0 }],
  ['temperature', { temperature: -0.1 }], ['temperature', { temperature: 2.5 }],
  ['temperature', { temperature: '0.7' }], ['temperature', { temperature: NaN }],
  ['topP', { topP: 1.01 }], ['topP', { topP: -1 }], ['topP', { top_p: 2 }],
  ['presencePenalty', { presencePenalty: 3 }], ['presencePenalty', { presence_penalty: -2.5 }],
  ['frequencyPenalty', { frequencyPenalty: 3 }], ['frequencyPenalty', { frequency_penalty: -3 }],
  ['repetitionPenalty', { repetitionPenalty: -1 }], ['repetitionPenalty', { repetition_penalty: 'x' }],
  ['stopSequences', { stopSequences: 'END' }], ['stopSequences', { stop_sequences: [1] }],
  ['stopTokenIds', { stopTokenIds: [-1] }], ['stopTokenIds', { stop_token_ids: [1.5] }],
  ['seed', { seed: -1 }], ['seed', { seed: 0.5 }],
  ['streaming', { streaming: 'yes' }], ['streaming', { stream: 1 }],
  ['structured', { structured: { format: 'xml', schema: {} } }],
  ['structured', { structured: { format: 'json' } }],
  ['structured', { structured: 'json' }],
  ['multimodal', { multimodal: { images: 'a.png' } }],
  ['multimodal', { multimodal: { images: ['a.png'], imageFormat: 'gif' } }],
  ['draftModel', { draftModel: 5 }], ['draftModel', { draft_model: {} }],
  ['promptTokens', { promptTokens: [-1] }], ['promptTokens', { prompt_tokens: 'abc' }],
  // second stage (§6.1): runtime limits, also InvalidParams
  ['maxTokens', { maxTokens: 4097 }],
  ['topP', { topP: 0 }],
  ['stopSequences', { stopSequences: Array.from({ length: 11 }, (_, i) => `s${i}`) }],
  ['stopSequences', { stopSequences: ['x'.repeat(101)] }],
  ['stopTokenIds', { stopTokenIds: Array.from({ length: 101 }, (_, i) => i) }],
  ['stopTokenIds', { stopTokenIds: [1_000_001] }],
  ['seed', { seed: 2 ** 32 }],
  ['prompt', { prompt: 'x'.repeat(1024 * 1024 + 1) }],
  // §15 additions
  ['topK', { topK: -1 }], ['topK', { top_k: 1.5 }], ['minP', { minP: 1.5 }], ['minP', { min_p: -0.1 }],
  ['numDraftTokens', { numDraftTokens: 0 }], ['numDraftTokens', { num_draft_tokens: 17 }],
];

/** A field path is the row's field or nested under it (e.g. `structured.format`). */
function fieldOf(err) {
  return err.details && err.details.field;
}

describe('§6.1 GeneratorParams: first next() rejects InvalidParams naming the field', () => {
  it.each(GENERATOR_ROWS.map(([field, patch]) => [field, JSON.stringify(patch, (k, v) => (
    typeof v === 'string' && v.length > 40 ? `${v.slice(0, 10)}…(${v.length})` : v)), patch]))(
    '%s: %s', async (field, _label, patch) => {
      seen = [];
      const gen = engine.createGenerator({ ...OK, ...patch });
      const err = await firstNextRejection(gen);
      const got = fieldOf(err);
      expect(got === field || String(got).startsWith(`${field}.`)).toBe(true);
      expectInvalid(err, got);
      expect(seen).toEqual([]); // §9.2: createGenerator errors emit nothing
      expect((await engine.healthCheck()).activeStreams).toBe(0);
      expect(engine.listModels()).toHaveLength(1);
    },
  );

  it.each([null, 'just a string', 42, [OK]])('non-object params %j → field root', async (params) => {
    seen = [];
    expectInvalid(await firstNextRejection(engine.createGenerator(params)), 'root');
    expect(seen).toEqual([]);
  });

  it('generate() rejects the same way, and create_generator behaves like createGenerator', async () => {
    expectInvalid(await rejectionOf(engine.generate({ ...OK, maxTokens: 0 })), 'maxTokens');
    const { maxTokens, ...noMax } = OK;
    expectInvalid(await firstNextRejection(engine.create_generator({ ...noMax, max_tokens: 0 })), 'maxTokens');
    // camelCase wins over snake_case (§5.1): the valid maxTokens hides the bad max_tokens.
    expect((await collect(engine.create_generator({ ...OK, max_tokens: 0 }))).at(-1).type).toBe('metadata');
    void maxTokens;
  });

  it('stream options: timeoutMs and streamId are validated too', async () => {
    const opt = { issues: false };
    expectInvalid(await firstNextRejection(engine.createGenerator(OK, { timeoutMs: 'soon' })), 'timeoutMs', opt);
    expectInvalid(await firstNextRejection(engine.createGenerator(OK, { timeoutMs: -5 })), 'timeoutMs', opt);
    expectInvalid(await firstNextRejection(engine.createGenerator(OK, { streamId: 5 })), 'streamId', opt);
  });

  it('after every rejection above the engine still generates', async () => {
    await expectGenerationWorks();
  });
});

// §6.2 LoadModelOptions (+ §10.2: `..` in a path is InvalidParams).
const LOAD_ROWS = [
  ['root', null], ['root', undefined], ['root', 42], ['root', true], ['root', ['x']],
  ['model', {}], ['model', ''], ['model', { model: '' }], ['model', { model: 123 }],
  ['model', { model: null }], ['model', { model_id: '' , model: LLAMA }],
  ['model', { model: { source: 'local', modality: 'text', family: 'mlx-lm' } }],
  ['model', { model: { id: 'x', source: 'ftp', modality: 'text', family: 'mlx-lm' } }],
  ['model', { model: { id: 'x', source: 'local', modality: 'audio', family: 'mlx-lm' } }],
  ['model', { model: { id: 'x', source: 'local', modality: 'text', family: 'torch' } }],
  ['model', { model: { id: 'x', source: 'local', modality: 'text', family: 'mlx-lm', tokenizer: { type: 'bpe', vocabSize: 0 } } }],
  ['model', { model: { id: 'x', source: 'local', modality: 'text', family: 'mlx-lm', tokenizer: { type: 'bpe', vocabSize: 1.5 } } }],
  ['quantization', { model: LLAMA, quantization: 'int3' }],
  ['draft', { model: LLAMA, draft: 'yes' }],
  ['trustRemoteCode', { model: LLAMA, trustRemoteCode: 'no' }],
  ['trustRemoteCode', { model: LLAMA, trust_remote_code: 1 }],
  ['revision', { model: LLAMA, revision: 5 }],
  ['parameters', { model: LLAMA, parameters: 'fast' }],
  ['model', { model: '../../etc/models' }],
  ['localPath', { model: 'alias', localPath: `${LLAMA}/../llama` }],
];

describe('§6.2 LoadModelOptions: loadModel rejects InvalidParams, one error event, nothing loaded', () => {
  it.each(LOAD_ROWS.map(([field, opts]) => [field, JSON.stringify(opts) ?? String(opts), opts]))(
    '%s: %s', async (field, _label, opts) => {
      const before = engine.listModels().map((h) => h.descriptor.id);
      seen = [];
      const err = await rejectionOf(engine.loadModel(opts));
      const got = fieldOf(err);
      expect(got === field || String(got).startsWith(`${field}.`)).toBe(true);
      expectInvalid(err, got);
      // §9.2 / §14.4: loadModel InvalidParams emits exactly one `error` (and no model:loaded).
      expect(seen.map((e) => e.name)).toEqual(['error']);
      expect(seen[0].payload.error).toMatchObject({ code: 'InvalidParams', details: { field: got } });
      expect(seen[0].payload.context).toBe('loadModel');
      expect(engine.listModels().map((h) => h.descriptor.id)).toEqual(before);
    },
  );

  it('load_model and loadDraftModel validate the same way', async () => {
    expectInvalid(await rejectionOf(engine.load_model({ model_id: '' })), 'model');
    expectInvalid(await rejectionOf(engine.loadDraftModel({ model: LLAMA, quantization: 'q2' })), 'quantization');
  });

  it('after every rejection above a valid load still succeeds', async () => {
    seen = [];
    const handle = await engine.loadModel({ model: LLAMA });
    expect(handle.state).toBe('ready');
    expect(seen.map((e) => e.name)).toEqual(['model:progress', 'model:loaded']);
  });
});

// §6.3 TokenizeRequest.
const TOKENIZE_ROWS = [
  ['root', null], ['root', 'text'], ['root', 7],
  ['model', {}], ['model', { text: 'x' }], ['model', { model: '', text: 'x' }],
  ['model', { model: 12, text: 'x' }], ['model', { model_id: '', text: 'x' }],
  ['text', { model: LLAMA }], ['text', { model: LLAMA, text: 5 }], ['text', { model: LLAMA, text: null }],
  ['text', { model: LLAMA, text: ['a'] }],
  ['addBos', { model: LLAMA, text: 'x', addBos: 'yes' }],
];

describe('§6.3 TokenizeRequest: tokenize rejects InvalidParams, no event', () => {
  it.each(TOKENIZE_ROWS.map(([field, req]) => [field, JSON.stringify(req), req]))(
    '%s: %s', async (field, _label, req) => {
      seen = [];
      const err = await rejectionOf(engine.tokenize(req));
      const got = fieldOf(err);
      expect(got === field || String(got).startsWith(`${field}.`)).toBe(true);
      expectInvalid(err, got);
      expect(seen).toEqual([]); // §14.4: tokenize InvalidParams is not announced
    },
  );

  it('aliases add_bos / add_special_tokens are validated as addBos', async () => {
    for (const key of ['add_bos', 'add_special_tokens']) {
      const err = await rejectionOf(engine.tokenize({ model: LLAMA, text: 'x', [key]: 'no' }));
      expect(err.code).toBe('InvalidParams');
      expect(String(err.details.field)).toMatch(/^(addBos|add_bos|add_special_tokens)$/);
    }
  });

  it('after every rejection above tokenize still works (empty text allowed)', async () => {
    expect((await engine.tokenize({ model: LLAMA, text: 'still fine' })).tokens.length).toBeGreaterThan(0);
    expect(Array.isArray((await engine.tokenize({ model: LLAMA, text: '' })).tokens)).toBe(true);
  });
});
