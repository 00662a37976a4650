// §2.5 validators: pure functions backed by the native rule table (one copy of each rule).
import { describe, it, expect } from 'vitest';
import {
  validateGeneratorParams, validateLoadModelOptions, validateTokenizeRequest,
  assertValidGeneratorParams, assertValidLoadModelOptions, assertValidTokenizeRequest,
  sanitizeModelId, isValidModelIdFormat, EngineClientError,
} from 'mlx-serving';

const ok = { model: 'm', prompt: 'hi' };

describe('validateGeneratorParams', () => {
  it('accepts a minimal request, template and token prompts', () => {
    expect(validateGeneratorParams(ok)).toEqual({ valid: true, errors: [] });
    expect(validateGeneratorParams({ model: 'm', prompt: { template: 'a {{x}}', variables: { x: 'y' } } }).valid).toBe(true);
    expect(validateGeneratorParams({ model: 'm', prompt: { tokens: [1, 2, 3] } }).valid).toBe(true);
    expect(validateGeneratorParams({ ...ok, maxTokens: 100000, temperature: 2, topP: 1, seed: 0 }).valid).toBe(true);
    expect(validateGeneratorParams({ ...ok, someUnknownKey: { nested: true } }).valid).toBe(true);
  });

  it.each([
    ['maxTokens 0', { maxTokens: 0 }],
    ['maxTokens -1', { maxTokens: -1 }],
    ['maxTokens 1.5', { maxTokens: 1.5 }],
    ["maxTokens '10'", { maxTokens: '10' }],
    ['maxTokens 100001', { maxTokens: 100001 }],
    ['temperature -0.1', { temperature: -0.1 }],
    ['temperature 2.5', { temperature: 2.5 }],
    ['temperature NaN', { temperature: Number.NaN }],
    ['topP -Infinity', { topP: Number.NEGATIVE_INFINITY }],
    ["temperature '0.7'", { temperature: '0.7' }],
    ['topP 1.01', { topP: 1.01 }],
    ['topP -1', { topP: -1 }],
    ['presencePenalty 3', { presencePenalty: 3 }],
    ['frequencyPenalty -3', { frequencyPenalty: -3 }],
    ['repetitionPenalty -1', { repetitionPenalty: -1 }],
    ["stopSequences 'END'", { stopSequences: 'END' }],
    ['stopSequences [1]', { stopSequences: [1] }],
    ['stopTokenIds [-1]', { stopTokenIds: [-1] }],
    ['stopTokenIds [1.5]', { stopTokenIds: [1.5] }],
    ['seed -1', { seed: -1 }],
    ['seed 0.5', { seed: 0.5 }],
    ["streaming 'yes'", { streaming: 'yes' }],
    ['structured xml', { structured: { format: 'xml', schema: {} } }],
    ['structured without schema', { structured: { format: 'json' } }],
    ["model ''", { model: '' }],
    ['model blank', { model: '   ' }],
    ['model 123', { model: 123 }],
    ['prompt 42', { prompt: 42 }],
    ["blank prompt '' (validator export is stricter than the engine, §2.5)", { prompt: '' }],
    ["blank prompt '  '", { prompt: '   ' }],
    ['prompt null', { prompt: null }],
    ['prompt {foo:1}', { prompt: { foo: 1 } }],
  ])('rejects %s', (_label, patch) => {
    const result = validateGeneratorParams({ ...ok, ...patch });
    expect(result.valid).toBe(false);
    expect(result.errors.length).toBeGreaterThan(0);
    for (const e of result.errors) expect(typeof e).toBe('string');
  });

  it('rejects a missing model / missing prompt / non-object', () => {
    expect(validateGeneratorParams({ prompt: 'x' }).valid).toBe(false);
    expect(validateGeneratorParams({ model: 'm' }).valid).toBe(false);
    expect(validateGeneratorParams(null).valid).toBe(false);
    expect(validateGeneratorParams(undefined).valid).toBe(false);
  });

  it('uses the documented short messages', () => {
    expect(validateGeneratorParams({ ...ok, maxTokens: 0 }).errors)
      .toContain('maxTokens must be a positive integer');
    expect(validateGeneratorParams({ prompt: 'x' }).errors).toContain('model is required');
  });

  it('normalizes snake_case like the engine does', () => {
    expect(validateGeneratorParams({ model_id: 'm', prompt: 'x', max_tokens: 5, top_p: 0.5 }).valid).toBe(true);
    expect(validateGeneratorParams({ ...ok, max_tokens: 0 }).valid).toBe(false);
    expect(validateGeneratorParams({ ...ok, top_p: 1.5 }).valid).toBe(false);
  });
});

describe('validateLoadModelOptions / validateTokenizeRequest', () => {
  it('load options', () => {
    expect(validateLoadModelOptions({ model: 'org/name' }).valid).toBe(true);
    expect(validateLoadModelOptions({ model: 'm', quantization: 'int4', draft: false }).valid).toBe(true);
    expect(validateLoadModelOptions({ model: '' }).valid).toBe(false);
    expect(validateLoadModelOptions({}).valid).toBe(false);
    expect(validateLoadModelOptions(null).valid).toBe(false);
    expect(validateLoadModelOptions({ model: 'm', quantization: 'int3' }).errors)
      .toContain('quantization must be one of: none, int8, int4');
    expect(validateLoadModelOptions({ model: 'm', draft: 'yes' }).valid).toBe(false);
  });

  it('tokenize request: text must be a non-empty string', () => {
    expect(validateTokenizeRequest({ model: 'm', text: 'hello' }).valid).toBe(true);
    expect(validateTokenizeRequest({ model: 'm', text: '' }).valid).toBe(false);
    expect(validateTokenizeRequest({ model: 'm' }).valid).toBe(false);
    expect(validateTokenizeRequest({ model: 'm', text: 5 }).valid).toBe(false);
    expect(validateTokenizeRequest({ model: '', text: 'x' }).valid).toBe(false);
    expect(validateTokenizeRequest({ model: 'm', text: 'x', addBos: 'no' }).valid).toBe(false);
  });
});

describe('assertValid*', () => {
  it.each([
    [assertValidGeneratorParams, { model: 'm', prompt: 'x', maxTokens: 0 }, 'Invalid GeneratorParams: '],
    [assertValidLoadModelOptions, { model: '' }, 'Invalid LoadModelOptions: '],
    [assertValidTokenizeRequest, { model: 'm' }, 'Invalid TokenizeRequest: '],
  ])('throws InvalidParams with the joined errors (%#)', (fn, input, prefix) => {
    let err;
    try {
      fn(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.message.startsWith(prefix)).toBe(true);
    expect(Array.isArray(err.details.errors)).toBe(true);
    expect(err.message).toBe(prefix + err.details.errors.join(', '));
  });

  it('does not throw for valid input', () => {
    expect(() => assertValidGeneratorParams(ok)).not.toThrow();
    expect(() => assertValidLoadModelOptions({ model: 'm' })).not.toThrow();
    expect(() => assertValidTokenizeRequest({ model: 'm', text: 'x' })).not.toThrow();
  });
});

describe('model id helpers', () => {
  it('sanitizeModelId trims and rejects traversal / separators / blanks', () => {
    expect(sanitizeModelId('  my-model_1.0  ')).toBe('my-model_1.0');
    for (const bad of ['', '   ', '../etc', 'a/b', 'a\\b', 'x..y']) {
      let err;
      try {
        sanitizeModelId(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(EngineClientError);
      expect(err.code).toBe('InvalidParams');
    }
  });

  it('isValidModelIdFormat is /^[a-zA-Z0-9._-]+$/', () => {
    expect(isValidModelIdFormat('Qwen2.5-0.5B_instruct')).toBe(true);
    expect(isValidModelIdFormat('org/name')).toBe(false);
    expect(isValidModelIdFormat('')).toBe(false);
    expect(isValidModelIdFormat('a b')).toBe(false);
  });
});
