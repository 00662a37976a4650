'use strict';
// The EngineOptions fields the native engine reads (everything else is facade-only or ignored):
// `promptCache` (prompt-prefix KV reuse) and `hub` (EXT: Hugging Face hub `{endpoint?, cacheDir?,
// token?, offline?}`, each overriding its HF_* environment variable for this engine). The
// addon validates both (InvalidParams naming the field).

const { toRaw } = require('./raw');

function nativeOptionsOf(opts) {
  const out = {};
  if (opts.promptCache !== undefined) out.promptCache = opts.promptCache;
  // Through toRaw: a BigInt or cycle must reach the addon as a marker it rejects, never raw.
  if (opts.hub !== undefined) out.hub = toRaw(opts.hub);
  return Object.keys(out).length > 0 ? out : null;
}

module.exports = { nativeOptionsOf };
