// The JS layer's own duties (DESIGN.md decision 4), pinned with a scripted native stand-in:
// laziness, AsyncGenerator protocol and cancellation wiring, error re-wrapping, events, the
// shared shutdown promise. The same behaviours are exercised against the real addon elsewhere.
import { describe, it, expect, vi } from 'vitest';
import { Engine, EngineClientError, createEngine } from 'mlx-serving';
import { makeFakeNative, nativeError, TOKENS } from './support/fake-native.mjs';
import { collect, rejectionOf, firstNextRejection } from './support/env.mjs';

function fakeEngine(script, options) {
  const fake = makeFakeNative(script);
  return { engine: new Engine(options, { native: fake.native }), ...fake };
}

describe('createGenerator wrapper', () => {
  it('returns a real AsyncGenerator synchronously and does nothing before next()', async () => {
    const { engine, calls } = fakeEngine({ chunks: TOKENS });
    const gen = engine.createGenerator({ model: 'm', prompt: 'x' });
    expect(Object.prototype.toString.call(gen)).toBe('[object AsyncGenerator]');
    expect(gen[Symbol.asyncIterator]()).toBe(gen);
    expect(calls).toEqual([]);
    await gen.return(undefined);
    expect(calls).toEqual([]);
  });

  it('adds cumulativeText and passes options through to the native stream', async () => {
    const { engine, calls } = fakeEngine({ chunks: TOKENS });
    const chunks = await collect(engine.createGenerator(
      { model: 'm', prompt: 'x', temperature: undefined, max_tokens: 3 },
      { streamId: 'abc', timeoutMs: 1234, priority: 'urgent' },
    ));
    expect(chunks.map((c) => c.cumulativeText)).toEqual(['Hel', 'Hello', 'Hello!', undefined]);
    const [, raw, options] = calls.find((c) => c[0] === 'createStream');
    expect(raw).toEqual({ model: 'm', prompt: 'x', max_tokens: 3 });
    expect(options).toEqual({ streamId: 'abc', timeoutMs: 1234 });
  });

  it('re-wraps native createStream errors, thrown from the first next()', async () => {
    const { engine } = fakeEngine({
      streamError: nativeError('InvalidParams', "Validation error on field 'maxTokens': bad",
        { field: 'maxTokens' }),
    });
    const gen = engine.createGenerator({ model: 'm', prompt: 'x', maxTokens: 0 });
    const err = await firstNextRejection(gen);
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details).toEqual({ field: 'maxTokens' });
    expect(err.retryable).toBe(false);
    expect(await gen.next()).toEqual({ done: true, value: undefined });
  });

  it('break cancels the native stream with reason "return"', async () => {
    const { engine, streams } = fakeEngine({ chunks: TOKENS });
    for await (const chunk of engine.createGenerator({ model: 'm', prompt: 'x' })) {
      expect(chunk.type).toBe('token');
      break;
    }
    expect(streams[0].cancels).toEqual(['return']);
  });

  it('throw() cancels the stream and rejects with the given error', async () => {
    const { engine, streams } = fakeEngine({ chunks: TOKENS });
    const gen = engine.createGenerator({ model: 'm', prompt: 'x' });
    await gen.next();
    const boom = new Error('boom');
    await expect(gen.throw(boom)).rejects.toBe(boom);
    expect(streams[0].cancels).toEqual(['return']);
  });

  it('does not cancel a stream that already ended with its terminal chunk', async () => {
    const { engine, streams } = fakeEngine({ chunks: TOKENS });
    await collect(engine.createGenerator({ model: 'm', prompt: 'x' }));
    expect(streams[0].cancels).toEqual([]);
  });

  it('pre-aborted signal rejects the first next() with Cancelled and starts nothing', async () => {
    const { engine, calls } = fakeEngine({ chunks: TOKENS });
    const gen = engine.createGenerator({ model: 'm', prompt: 'x' },
      { signal: AbortSignal.abort() });
    const err = await firstNextRejection(gen);
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('Cancelled');
    expect(calls).toEqual([]);
  });

  it('abort mid-stream cancels with "abort", yields the Cancelled chunk, removes its listener', async () => {
    const { engine, streams } = fakeEngine({ chunks: TOKENS, delayMs: 30 });
    const controller = new AbortController();
    const remove = vi.spyOn(controller.signal, 'removeEventListener');
    const seen = [];
    for await (const chunk of engine.createGenerator({ model: 'm', prompt: 'x' },
      { signal: controller.signal })) {
      seen.push(chunk);
      if (seen.length === 1) controller.abort();
    }
    expect(streams[0].cancels).toEqual(['abort']);
    expect(seen.map((c) => c.type)).toEqual(['token', 'error']);
    expect(seen[1].error.code).toBe('Cancelled');
    expect(remove).toHaveBeenCalledWith('abort', expect.any(Function));
  });

  it('removes the abort listener when the stream completes normally', async () => {
    const { engine } = fakeEngine({ chunks: TOKENS });
    const controller = new AbortController();
    const add = vi.spyOn(controller.signal, 'addEventListener');
    const remove = vi.spyOn(controller.signal, 'removeEventListener');
    await collect(engine.createGenerator({ model: 'm', prompt: 'x' },
      { signal: controller.signal }));
    expect(add).toHaveBeenCalledTimes(1);
    expect(remove).toHaveBeenCalledWith('abort', add.mock.calls[0][1]);
  });

  it('generate() throws an error chunk as EngineClientError with engineError details', async () => {
    const { engine } = fakeEngine({
      chunks: [TOKENS[0], { type: 'error', error: { code: 'Timeout', message: 'Stream s1 timed out' } }],
    });
    const err = await rejectionOf(engine.generate({ model: 'm', prompt: 'x' }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('Timeout');
    expect(err.details.engineError).toEqual({ code: 'Timeout', message: 'Stream s1 timed out' });
  });
});

describe('errors from the addon', () => {
  it('non-JSON native errors take the operation fallback code', async () => {
    const { engine } = fakeEngine({ loadError: new Error('something odd') });
    const err = await rejectionOf(engine.loadModel('m'));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('ModelLoadError');
    expect(err.message).toBe('something odd');
  });

  it('AbortError → Cancelled and /timeout/i → Timeout (§10.2)', async () => {
    const abort = new Error('aborted');
    abort.name = 'AbortError';
    const a = fakeEngine({ tokenizeError: abort });
    expect((await rejectionOf(a.engine.tokenize({ model: 'm', text: 'x' }))).code).toBe('Cancelled');
    const t = fakeEngine({ tokenizeError: new Error('operation Timeout reached') });
    expect((await rejectionOf(t.engine.tokenize({ model: 'm', text: 'x' }))).code).toBe('Timeout');
  });

  it('start failure makes createEngine reject RuntimeError', async () => {
    const fake = makeFakeNative({ startError: new Error('no device') });
    const err = await rejectionOf(createEngine({}, { native: fake.native }));
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('RuntimeError');
  });
});

describe('loadModel facade duties', () => {
  it('strips functions before the native call and reports load progress', async () => {
    const { engine, calls } = fakeEngine({});
    const progress = [];
    const events = [];
    engine.on('model:progress', (e) => events.push(e));
    await engine.loadModel({ model: 'm', onProgress: (p) => progress.push(p), extra: undefined });
    const [, raw] = calls.find((c) => c[0] === 'loadModel');
    expect(raw).toEqual({ model: 'm' });
    expect(progress).toEqual([{ phase: 'load' }]);
    expect(events).toEqual([{ phase: 'load', modelId: 'm' }]);
  });

  it('telemetry hooks fire and a throwing hook does not break the call', async () => {
    const onModelLoaded = vi.fn(() => { throw new Error('hook bug'); });
    const onError = vi.fn();
    const { engine } = fakeEngine({}, { telemetry: { enabled: true, hooks: { onModelLoaded, onError } } });
    const handle = await engine.loadModel('m');
    expect(onModelLoaded).toHaveBeenCalledWith(handle);
    const bad = fakeEngine({ loadError: nativeError('ModelLoadError', 'nope') },
      { telemetry: { enabled: true, hooks: { onError } } });
    await rejectionOf(bad.engine.loadModel('m'));
    expect(onError).toHaveBeenCalledWith({ code: 'ModelLoadError', message: 'nope' });
  });

  it('telemetry hooks are not called when telemetry is disabled', async () => {
    const onModelLoaded = vi.fn();
    const { engine } = fakeEngine({}, { telemetry: { enabled: false, hooks: { onModelLoaded } } });
    await engine.loadModel('m');
    expect(onModelLoaded).not.toHaveBeenCalled();
  });
});

describe('lifecycle bookkeeping', () => {
  it('shutdown of a never-started engine resolves without creating the native engine', async () => {
    const { engine, calls } = fakeEngine({});
    await engine.shutdown();
    await engine.dispose();
    expect(calls).toEqual([]);
  });

  it('concurrent shutdowns share one promise and one native shutdown', async () => {
    const { engine, calls } = fakeEngine({});
    await engine.tokenize({ model: 'm', text: 'x' });
    const p1 = engine.shutdown();
    const p2 = engine.dispose();
    expect(p2).toBe(p1);
    const during = await rejectionOf(engine.tokenize({ model: 'm', text: 'x' }));
    expect(during).toBeInstanceOf(EngineClientError);
    expect(during.code).toBe('RuntimeError');
    expect(during.message).toBe('Engine shutdown in progress');
    await p1;
    await engine.shutdown();
    expect(calls.filter((c) => c[0] === 'shutdown')).toHaveLength(1);
  });

  it('concurrent first calls start the runtime once', async () => {
    const { engine, calls } = fakeEngine({});
    await Promise.all([
      engine.tokenize({ model: 'm', text: 'a' }),
      engine.tokenize({ model: 'm', text: 'b' }),
      engine.getRuntimeInfo(),
    ]);
    expect(calls.filter((c) => c[0] === 'start')).toHaveLength(1);
  });

  it('healthCheck never starts the runtime', async () => {
    const { engine, calls } = fakeEngine({});
    const h = await engine.healthCheck();
    expect(h).toMatchObject({ status: 'unhealthy', uptime: 0, runtime: { status: 'stopped' } });
    expect(calls).toEqual([]);
  });
});

describe('request coalescing (batch_tokenize)', () => {
  it('same-tick tokenize calls travel as one native batch; each settles on its own', async () => {
    const { engine, calls } = fakeEngine({ batch: true });
    await engine.getRuntimeInfo(); // started
    const results = await Promise.allSettled([
      engine.tokenize({ model: 'm', text: 'a' }),
      engine.tokenize({ model: 'm', text: 'bad' }),
      engine.tokenize({ model: 'm', text: 'ccc' }),
    ]);
    expect(calls.filter((c) => c[0] === 'tokenizeBatch')).toEqual([['tokenizeBatch', [
      { model: 'm', text: 'a' }, { model: 'm', text: 'bad' }, { model: 'm', text: 'ccc' },
    ]]]);
    expect(calls.filter((c) => c[0] === 'tokenize')).toEqual([]);
    expect(results[0].value.tokens).toEqual([1]);
    expect(results[2].value.tokens).toEqual([3]);
    const err = results[1].reason;
    expect(err).toBeInstanceOf(EngineClientError);
    expect(err.code).toBe('InvalidParams');
    expect(err.details).toEqual({ field: 'text' });
  });

  it('a lone call uses the single-request entry point', async () => {
    const { engine, calls } = fakeEngine({ batch: true });
    await engine.tokenize({ model: 'm', text: 'solo' });
    expect(calls.filter((c) => c[0] === 'tokenize')).toHaveLength(1);
    expect(calls.filter((c) => c[0] === 'tokenizeBatch')).toEqual([]);
  });
});
