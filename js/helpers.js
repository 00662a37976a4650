'use strict';
// §2.3 convenience helpers: plain JS over the public Engine API (no native calls of their own).

function chunkError(chunk) {
  return new Error(chunk.error && chunk.error.message ? chunk.error.message : 'Generation failed');
}

/** Concatenated token text; an error chunk becomes a plain Error (original behaviour). */
async function generateText(engine, params) {
  let text = '';
  for await (const chunk of engine.createGenerator(params)) {
    if (chunk.type === 'token') text += chunk.token;
    else if (chunk.type === 'error') throw chunkError(chunk);
  }
  return text;
}

async function generateTextStreaming(engine, params, onToken) {
  let text = '';
  for await (const chunk of engine.createGenerator(params)) {
    if (chunk.type === 'token') {
      text += chunk.token;
      onToken(chunk.token);
    } else if (chunk.type === 'error') {
      throw chunkError(chunk);
    }
  }
  return text;
}

/** The ready handle if loaded, else load it. */
async function ensureModelLoaded(engine, options) {
  const id = typeof options === 'string' ? options
    : (options && (typeof options.model === 'string' ? options.model
      : options.model && options.model.id));
  const existing = id !== undefined ? engine.getModelInfo(id) : undefined;
  if (existing && existing.state === 'ready') return existing;
  return engine.loadModel(options);
}

async function batchTokenize(engine, model, texts) {
  const results = await Promise.all(texts.map((text) => engine.tokenize({ model, text })));
  return results.map((r) => r.tokens);
}

async function collectChunks(engine, params) {
  const chunks = [];
  for await (const chunk of engine.createGenerator(params)) {
    if (chunk.type === 'error') throw chunkError(chunk);
    chunks.push(chunk);
  }
  return chunks;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForModelReady(engine, modelId, timeoutMs = 30000, pollIntervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const handle = engine.getModelInfo(modelId);
    if (handle && handle.state === 'ready') return handle;
    if (handle && handle.state === 'failed') throw new Error(`Model ${modelId} failed to load`);
    if (Date.now() >= deadline) {
      throw new Error(`Timeout waiting for model ${modelId} to be ready`);
    }
    await sleep(pollIntervalMs);
  }
}

async function isEngineHealthy(engine) {
  try {
    const health = await engine.healthCheck();
    return health.status === 'healthy';
  } catch {
    return false;
  }
}

async function getTotalTokenCount(engine, model, texts) {
  const all = await batchTokenize(engine, model, texts);
  return all.reduce((sum, tokens) => sum + tokens.length, 0);
}

/** Retries with delay initialDelayMs · 2^attempt; rethrows the last error. */
async function retryLoadModel(engine, options, maxRetries = 3, initialDelayMs = 1000) {
  let lastError;
  for (let attempt = 0; attempt < maxRetries; attempt += 1) {
    try {
      return await engine.loadModel(options);
    } catch (err) {
      lastError = err;
      if (attempt < maxRetries - 1) await sleep(initialDelayMs * 2 ** attempt);
    }
  }
  throw lastError;
}

module.exports = {
  generateText,
  generateTextStreaming,
  ensureModelLoaded,
  batchTokenize,
  collectChunks,
  waitForModelReady,
  isEngineHealthy,
  getTotalTokenCount,
  retryLoadModel,
};
