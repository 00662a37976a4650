'use strict';
// Members whose native side does not exist yet (vision, draft compatibility report). They fail
// loudly with the spec's code for that operation instead of pretending to succeed, so callers
// can detect the gap (spec §7.8, §7.12; `RuntimeInfo.capabilities` does not list them either).

const { EngineClientError } = require('./errors');

function notSupported(code, member) {
  return new EngineClientError(code, `${member} is not supported by this build of mlx-serving`,
    { member, supported: false });
}

function imageCount(params) {
  const image = params && typeof params === 'object' ? params.image : undefined;
  if (Array.isArray(image)) return image.length;
  return image === undefined || image === null ? 0 : 1;
}

/**
 * §7.12 checks in the original order: no image → RuntimeError, more than one → RuntimeError,
 * then the model must be a loaded vision model — none can be loaded yet → ModelNotLoaded.
 * Failures are thrown from the first next() and announced through `fail` (emits `error`).
 */
async function* visionGenerator(params, options, fail) {
  if (options && options.signal && options.signal.aborted) {
    throw fail(new EngineClientError('Cancelled', 'Generation aborted before it started'));
  }
  const n = imageCount(params);
  if (n === 0) {
    throw fail(new EngineClientError('RuntimeError',
      'At least one image is required for vision generation'));
  }
  if (n > 1) {
    throw fail(new EngineClientError('RuntimeError',
      `Only one image per request is supported (got ${n})`));
  }
  const model = params && typeof params === 'object' ? params.model : undefined;
  throw fail(new EngineClientError('ModelNotLoaded', `Vision model not loaded: ${model}`));
  // eslint-disable-next-line no-unreachable
  yield undefined;
}

module.exports = { notSupported, visionGenerator };
