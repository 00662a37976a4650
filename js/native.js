'use strict';
// Loads the compiled addon through the loader that `napi build --js native.cjs` generates.
// Kept lazy-free and tiny: a missing build is the most common first-run problem, so the
// error says exactly what to run instead of showing a bare MODULE_NOT_FOUND.

let native;
try {
  native = require('../native.cjs');
} catch (cause) {
  const err = new Error(
    'mlx-serving: the native addon is not built or failed to load '
      + `(${cause && cause.message ? cause.message.split('\n')[0] : cause}). `
      + 'Run `npm run build` (or `npm start`, which installs the MLX runtime and builds it) '
      + 'in the mlx-serving package directory.',
  );
  err.code = 'ERR_MLX_SERVING_NATIVE';
  err.cause = cause;
  throw err;
}

module.exports = native;
