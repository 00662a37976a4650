'use strict';
// §12.1 `MLXEngine`: a one-model convenience wrapper over Engine (mlx-engine style).

const { createEngine } = require('./factories');

const NOT_INITIALIZED = 'MLXEngine not initialized. Call init() first.';

class MLXEngine {
  #model;
  #engine = null;
  #handle = null;
  #initPromise = null;

  constructor(model) {
    this.#model = model;
  }

  init() {
    if (!this.#initPromise) {
      this.#initPromise = (async () => {
        const engine = await createEngine();
        try {
          this.#handle = await engine.loadModel(this.#model);
        } catch (err) {
          await engine.shutdown().catch(() => undefined);
          throw err;
        }
        this.#engine = engine;
        return this;
      })();
      this.#initPromise.catch(() => { this.#initPromise = null; });
    }
    return this.#initPromise;
  }

  #params(prompt, params) {
    if (!this.#engine) throw new Error(NOT_INITIALIZED);
    return {
      ...(params || {}),
      model: this.#handle.descriptor.id,
      prompt,
    };
  }

  async generate(prompt, params) {
    const request = this.#params(prompt, params);
    let text = '';
    for await (const chunk of this.#engine.createGenerator(request)) {
      if (chunk.type === 'token') text += chunk.token;
      else if (chunk.type === 'error') throw new Error(chunk.error.message);
    }
    return text;
  }

  async* generateStream(prompt, params) {
    const request = { ...this.#params(prompt, params), streaming: true };
    yield* this.#engine.createGenerator(request);
  }

  async tokenize(text) {
    if (!this.#engine) throw new Error(NOT_INITIALIZED);
    const { tokens } = await this.#engine.tokenize({ model: this.#handle.descriptor.id, text });
    return tokens;
  }

  getModelHandle() {
    return this.#handle;
  }

  getEngine() {
    return this.#engine;
  }

  isInitialized() {
    return this.#engine !== null;
  }

  async dispose() {
    const engine = this.#engine;
    const handle = this.#handle;
    this.#engine = null;
    this.#handle = null;
    this.#initPromise = null;
    if (!engine) return;
    try {
      await engine.unloadModel(handle.descriptor.id);
    } finally {
      await engine.shutdown();
    }
  }
}

function createMLXEngine(modelOrOptions) {
  return new MLXEngine(modelOrOptions).init();
}

module.exports = { MLXEngine, createMLXEngine };
