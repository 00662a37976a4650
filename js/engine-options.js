'use strict';
// The EngineOptions fields the native engine reads (everything else is facade-only or ignored):
// `promptCache` (prompt-prefix KV reuse) and `hub` (EXT: Hugging Face hub `{endpoint?, cacheDir?,
// token?, offline?}`, each overriding its HF_* environment variable for this engine). The
// addon validates both (InvalidParams naming the field).

function nativeOptionsOf(opts) {
  const out = {};
  if (opts.promptCache !== undefined) out.promptCache = opts.promptCache;
  if (opts.hub !== undefined) out.hub = opts.hub;
  return Object.keys(out).length > 0 ? out : null;
}

module.exports = { nativeOptionsOf };
