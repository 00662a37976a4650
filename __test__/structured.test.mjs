// Structured output (§7.7) through the public API: JSON-schema constrained decoding. The schemas
// (tests/data/structured_schemas.json, shared with the cargo suite) cover objects, arrays, nested
// $ref/$defs, enums, const, required/optional, anyOf, patterns, string formats and number
// ranges, plus real-world shapes (a tool call, a product listing, an address book). Every output
// must parse and validate with ajv. The real default model runs all of them greedily and five at
// temperature 1 with three seeds (the five shortest documents, to keep the suite under 10 min); the random-weight fixture (noise unless constrained) runs all
// of them at temperature 1 with several seeds.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Engine, EngineClientError } from 'mlx-serving';
import { ROOT, defaultModel, fixture, collect, firstNextRejection } from './support/env.mjs';

const SCHEMAS = JSON.parse(readFileSync(path.join(ROOT, 'crates/core/tests/data/structured_schemas.json'), 'utf8'));
const MODEL = defaultModel();
const LLAMA = fixture('llama');

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const validators = new Map(SCHEMAS.map(({ name, schema }) => {
  const { $schema, ...rest } = schema; // draft-07 documents validate the same under 2020-12 here
  return [name, ajv.compile(rest)];
}));

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(MODEL);
  await engine.loadModel(LLAMA);
});
afterAll(async () => {
  await engine.shutdown();
});

/** Generates under the schema; returns {text, finishReason}. */
async function structured(params, schema) {
  const chunks = await collect(engine.createGenerator({ ...params, structured: { format: 'json', schema } }));
  const meta = chunks.at(-1);
  expect(meta.type, JSON.stringify(meta)).toBe('metadata');
  const text = chunks.filter((c) => c.type === 'token').map((c) => c.token).join('');
  const { finishReason, tokensGenerated, totalTime } = meta.stats;
  if (process.env.SHOW_STRUCTURED) console.log(`[${finishReason}, ${tokensGenerated} tokens, ${totalTime.toFixed(1)} s] ${text}`);
  return { text, finishReason };
}

function expectValid(name, { text, finishReason }) {
  expect(['stop', 'eos'], `${name}: ${text}`).toContain(finishReason);
  let doc;
  expect(() => { doc = JSON.parse(text); }, `${name}: not JSON: ${text}`).not.toThrow();
  const validate = validators.get(name);
  expect(validate(doc), `${name}: ${text} → ${ajv.errorsText(validate.errors)}`).toBe(true);
  return doc;
}

// SmolLM2's ChatML written out, without the template's default system prompt: prefill is the
// largest cost per request on a CPU box (chat templates themselves are covered by chat.test.mjs).
const chat = ({ prompt, maxTokens }) => ({
  model: MODEL,
  prompt: `<|im_start|>user\n${prompt}<|im_end|>\n<|im_start|>assistant\n`,
  maxTokens,
});

describe('structured output with the real default model', () => {
  it('reports the guidance capability', async () => {
    expect((await engine.getRuntimeInfo()).capabilities).toContain('guidance');
  });

  for (const c of SCHEMAS) {
    it(`${c.name} at temperature 0`, async () => {
      const doc = expectValid(c.name, await structured({ ...chat(c), temperature: 0 }, c.schema));
      if (c.name === 'tool_call') {
        // The model's own choice, steered by the prompt, within the grammar.
        expect(doc.name).toBe('get_weather');
        expect(doc.arguments.location).toContain('Paris');
      }
    });
  }

  // The five with the shortest documents (the real model decodes a few tokens per second here).
  const SAMPLED = ['tool_call', 'color_enum', 'any_of_value', 'const_envelope', 'sentiment'];
  for (const name of SAMPLED) {
    it(`${name} at temperature 1 (topP 0.95), seeds 1-3`, async () => {
      const c = SCHEMAS.find((s) => s.name === name);
      for (const seed of [1, 2, 3]) {
        expectValid(name, await structured({ ...chat(c), temperature: 1, topP: 0.95, seed }, c.schema));
      }
    });
  }
});

describe('structured output on the random-weight fixture (valid only through the constraint)', () => {
  for (const c of SCHEMAS) {
    it(`${c.name} at temperature 1, seeds 1-3`, async () => {
      for (const seed of [1, 2, 3]) {
        const params = { model: LLAMA, prompt: 'Reply with JSON.', maxTokens: 400, temperature: 1, seed };
        expectValid(c.name, await structured(params, c.schema));
      }
    });
  }
});

describe('structured output errors (GuidanceError from the first next())', () => {
  const base = { model: LLAMA, prompt: 'x', maxTokens: 4 };

  it.each([
    ['an unknown type', { type: 'strin' }],
    ['an empty range', { type: 'integer', minimum: 5, maximum: 1 }],
    ['a dangling $ref', { type: 'object', properties: { a: { $ref: '#/$defs/missing' } }, required: ['a'] }],
    ['an invalid pattern', { type: 'string', pattern: '(unclosed' }],
  ])('%s → GuidanceError with llguidance\'s message', async (_, schema) => {
    const err = await firstNextRejection(engine.createGenerator({ ...base, structured: { format: 'json', schema } }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('GuidanceError');
    expect(err.message.length).toBeGreaterThan(20);
  });

  it("format 'yaml' → GuidanceError (unsupported)", async () => {
    const err = await firstNextRejection(engine.createGenerator({ ...base, structured: { format: 'yaml', schema: { type: 'object' } } }));
    expect(err.code).toBe('GuidanceError');
    expect(err.message).toMatch(/yaml/);
  });

  it('a schema over 32768 bytes → GuidanceError; the engine keeps serving', async () => {
    const properties = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`property_${i}`, { type: 'string' }]));
    const err = await firstNextRejection(engine.createGenerator({ ...base, structured: { format: 'json', schema: { type: 'object', properties } } }));
    expect(err.code).toBe('GuidanceError');
    expect(err.message).toMatch(/32768/);
    const out = await engine.generate({ ...base, temperature: 0, structured: { format: 'json', schema: { type: 'boolean' } } });
    expect(typeof JSON.parse(out)).toBe('boolean');
  });
});
