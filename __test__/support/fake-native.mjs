// A scripted stand-in with the shape of docs/NATIVE_API.md, used only by facade.test.mjs to pin
// down what the JS layer itself does (laziness, cancellation wiring, error re-wrapping) — the
// contract files run the real addon.
export function nativeError(code, message, details, retryable = false) {
  const payload = { code, message, retryable };
  if (details) payload.details = details;
  return new Error(JSON.stringify(payload));
}

export class FakeStream {
  constructor(id, chunks, { delayMs = 0 } = {}) {
    this.id = id;
    this.pending = [...chunks];
    this.delayMs = delayMs;
    this.cancels = [];
    this.ended = false;
    this.wake = null;
  }

  cancel(reason) {
    this.cancels.push(reason);
    if (this.ended) return;
    this.ended = true;
    this.pending = reason === 'abort'
      ? [{ type: 'error', error: { code: 'Cancelled', message: 'Stream aborted' } }] : [];
    if (this.wake) this.wake();
  }

  async next() {
    if (this.delayMs) {
      await new Promise((resolve) => {
        const t = setTimeout(resolve, this.delayMs);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      this.wake = null;
    }
    if (this.pending.length === 0) return [];
    const chunk = this.pending.shift();
    if (chunk.type !== 'token') this.ended = true;
    return [chunk];
  }
}

export function makeFakeNative(script = {}) {
  const calls = [];
  const streams = [];
  class NativeEngine {
    constructor() {
      this.running = false;
      this.models = [];
      calls.push(['new']);
    }

    async start() {
      calls.push(['start']);
      if (script.startError) throw script.startError;
      await new Promise((r) => setTimeout(r, 5));
      this.running = true;
    }

    async shutdown() {
      calls.push(['shutdown']);
      await new Promise((r) => setTimeout(r, 20));
      this.running = false;
      this.models = [];
    }

    isRunning() { return this.running; }

    uptimeMs() { return this.running ? 42 : 0; }

    async loadModel(raw, onProgress) {
      calls.push(['loadModel', raw]);
      if (script.loadError) throw script.loadError;
      // Like the addon: the `load` progress payload is sent before the promise settles.
      if (typeof onProgress === 'function') onProgress({ phase: 'load' });
      const id = typeof raw === 'string' ? raw : raw.model;
      const handle = { descriptor: { id }, state: 'ready', contextLength: 8, metadata: {}, draft: false };
      this.models.push(handle);
      return handle;
    }

    async unloadModel(id) { calls.push(['unloadModel', id]); }

    listModels() { return [...this.models]; }

    getModelInfo(id) { return this.models.find((m) => m.descriptor.id === id) ?? null; }

    async tokenize(raw) {
      calls.push(['tokenize', raw]);
      if (script.tokenizeError) throw script.tokenizeError;
      return { tokens: [1], tokenStrings: ['a'] };
    }

    async createStream(raw, options) {
      calls.push(['createStream', raw, options]);
      if (script.streamError) throw script.streamError;
      const stream = new FakeStream(options.streamId ?? 's1', script.chunks ?? [], script);
      streams.push(stream);
      return stream;
    }

    activeStreams() { return streams.filter((s) => !s.ended).length; }

    async runtimeInfo() { return { version: '1.3.0', capabilities: [] }; }

    cacheStats() { return { loadedModels: 0, maxModels: 5, cacheEnabled: true, models: [] }; }
  }
  if (script.batch) {
    // The batch entry point of docs/NATIVE_API.md: one entry per request, in order.
    NativeEngine.prototype.tokenizeBatch = async function tokenizeBatch(raws) {
      calls.push(['tokenizeBatch', raws]);
      return raws.map((r) => (r.text === 'bad'
        ? { success: false, error: { code: 'InvalidParams', message: 'bad text', details: { field: 'text' }, retryable: false } }
        : { success: true, result: { tokens: [r.text.length], tokenStrings: ['x'] } }));
    };
  }
  return { native: { NativeEngine }, calls, streams };
}

export const TOKENS = [
  { type: 'token', token: 'Hel', tokenId: 1, isFinal: false },
  { type: 'token', token: 'lo', tokenId: 2, isFinal: false },
  { type: 'token', token: '!', tokenId: 3, isFinal: true },
  {
    type: 'metadata',
    stats: {
      tokensGenerated: 3, tokensPerSecond: 1, timeToFirstToken: 0.1, totalTime: 0.3,
      modelId: 'm', finishReason: 'length',
    },
  },
];
