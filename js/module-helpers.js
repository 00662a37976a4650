'use strict';
// §2.4 module-level helpers (mlx-engine style): one process-global Engine, created lazily on first
// use and forgotten by shutdown().

const { Engine } = require('./engine');

let globalEngine = null;

function getEngine() {
  return globalEngine;
}

function engine() {
  if (!globalEngine) globalEngine = new Engine();
  return globalEngine;
}

function load_model(modelOrOptions, extra) {
  const options = typeof modelOrOptions === 'string' && extra && typeof extra === 'object'
    ? { model: modelOrOptions, ...extra } : modelOrOptions;
  return engine().loadModel(options);
}

function generatorParams(modelKit, prompt, params) {
  return {
    ...(params || {}),
    model: modelKit.descriptor.id,
    prompt: Array.isArray(prompt) ? { tokens: prompt } : prompt,
  };
}

function create_generator(modelKit, prompt, params) {
  return engine().createGenerator(generatorParams(modelKit, prompt, params));
}

async function tokenize(modelKit, text, options) {
  const request = { model: modelKit.descriptor.id, text };
  if (options && options.add_bos !== undefined) request.addBos = options.add_bos;
  return engine().tokenize(request);
}

/** Concatenated text; an error chunk becomes a plain Error (original behaviour). */
async function generate(modelKit, prompt, params) {
  let text = '';
  for await (const chunk of create_generator(modelKit, prompt, params)) {
    if (chunk.type === 'token') text += chunk.token;
    else if (chunk.type === 'error') throw new Error(chunk.error.message);
  }
  return text;
}

function unload_model(modelKit) {
  return engine().unloadModel(modelKit.descriptor.id);
}

async function shutdown() {
  const e = globalEngine;
  globalEngine = null;
  if (e) await e.shutdown();
}

module.exports = {
  load_model, create_generator, tokenize, generate, unload_model, shutdown, getEngine,
};
