// The real default model (SmolLM2-135M-Instruct, f32): the one place where the meaning of the
// output is asserted — a chat prompt rendered with the model's own ChatML template (§15).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Engine, EngineClientError } from 'mlx-serving';
import { defaultModel, fixture, firstNextRejection } from './support/env.mjs';

const MODEL = defaultModel();

let engine;
beforeAll(async () => {
  engine = new Engine();
  await engine.loadModel(MODEL);
});
afterAll(async () => {
  await engine.shutdown();
});

describe('chat prompts with the real default model', () => {
  it('answers "What is the capital of France?" with Paris (temperature 0)', async () => {
    const text = await engine.generate({
      model: MODEL,
      prompt: { messages: [{ role: 'user', content: 'What is the capital of France?' }] },
      temperature: 0,
      maxTokens: 40,
    });
    expect(text).toContain('Paris');
    expect(text).not.toContain('<|im_end|>'); // EOS text is never yielded
  });

  it('ends on the chat EOS token with finishReason eos, and the template is applied once', async () => {
    const chunks = [];
    for await (const c of engine.createGenerator({
      model: MODEL,
      prompt: {
        messages: [
          { role: 'system', content: 'You are a helpful assistant.' },
          { role: 'user', content: 'Say hello.' },
        ],
      },
      temperature: 0,
      maxTokens: 200,
    })) chunks.push(c);
    const meta = chunks.at(-1);
    expect(meta.type).toBe('metadata');
    expect(meta.stats.finishReason).toBe('eos');
    expect(meta.stats.tokensGenerated).toBeLessThan(200);
    const text = chunks.filter((c) => c.type === 'token').map((c) => c.token).join('');
    expect(text).not.toMatch(/<\|im_start\|>|<\|im_end\|>/);
    expect(text.trim().length).toBeGreaterThan(0);
  });

  it('a greedy chat answer is identical alone and beside another stream', async () => {
    const params = {
      model: MODEL,
      prompt: { messages: [{ role: 'user', content: 'Name three colors.' }] },
      temperature: 0,
      maxTokens: 24,
    };
    const alone = await engine.generate(params);
    const [together] = await Promise.all([
      engine.generate(params),
      engine.generate({ ...params, prompt: 'The history of Rome' }),
    ]);
    expect(together).toBe(alone);
  });

  it.each([
    ['empty messages', { messages: [] }, /^prompt\.messages/],
    ['unknown role', { messages: [{ role: 'wizard', content: 'hi' }] }, /^prompt\.messages\.0/],
    ['non-string content', { messages: [{ role: 'user', content: 42 }] }, /^prompt\.messages\.0/],
  ])('%s → InvalidParams on a prompt.messages field', async (_l, prompt, field) => {
    const err = await firstNextRejection(engine.createGenerator({ model: MODEL, prompt, maxTokens: 2 }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details.field).toMatch(field);
  });

  it('tokenize gives the SmolLM2 vocabulary pieces', async () => {
    const res = await engine.tokenize({ model: MODEL, text: 'Hello world' });
    expect(res.tokenStrings).toEqual(['Hello', 'Ġworld']);
  });

  it('runs beside a tiny fixture model', async () => {
    const tiny = fixture('qwen3');
    await engine.loadModel(tiny);
    const text = await engine.generate({ model: tiny, prompt: 'x', maxTokens: 3, temperature: 0 });
    expect(typeof text).toBe('string');
    expect(engine.getModelInfo(MODEL)?.state).toBe('ready');
  });
});
