'use strict';
// §2.1 / §2.3 factories: construct-and-start, and the scoped `withEngine` helper.

const { Engine, kStart } = require('./engine');
const { EngineClientError } = require('./errors');

/** Must equal 'phase-0' (original contract test). */
const ENGINE_API_SNAPSHOT_VERSION = 'phase-0';

async function createEngine(options, deps) {
  const engine = new Engine(options, deps);
  try {
    await engine[kStart]();
  } catch (err) {
    throw err instanceof EngineClientError && err.code === 'RuntimeError' ? err
      : new EngineClientError('RuntimeError', `Engine failed to start: ${err && err.message}`);
  }
  return engine;
}

/** createEngine → cb(engine) → always dispose(); resolves with cb's value. */
async function withEngine(callback, options) {
  const engine = await createEngine(options);
  try {
    return await callback(engine);
  } finally {
    await engine.dispose();
  }
}

module.exports = { ENGINE_API_SNAPSHOT_VERSION, createEngine, withEngine };
