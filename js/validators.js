'use strict';
// §2.5 validators. The rules exist once, in Rust (DESIGN.md decision 4): `validate*`,
// `sanitizeModelId` and `isValidModelIdFormat` call the addon; `assertValid*` only shape the
// thrown error; clamp/normalize* are arithmetic, not rules.

const { EngineClientError, fromNative } = require('./errors');
const { toRawArg } = require('./raw');

function native() {
  return require('./native');
}

function validateLoadModelOptions(options) {
  return native().validateLoadModelOptions(toRawArg(options));
}

function validateGeneratorParams(params) {
  return native().validateGeneratorParams(toRawArg(params));
}

function validateTokenizeRequest(request) {
  return native().validateTokenizeRequest(toRawArg(request));
}

function asserter(validate, label) {
  return (value) => {
    const result = validate(value);
    if (!result.valid) {
      throw new EngineClientError('InvalidParams',
        `Invalid ${label}: ${result.errors.join(', ')}`, { errors: result.errors });
    }
  };
}

const assertValidLoadModelOptions = asserter(validateLoadModelOptions, 'LoadModelOptions');
const assertValidGeneratorParams = asserter(validateGeneratorParams, 'GeneratorParams');
const assertValidTokenizeRequest = asserter(validateTokenizeRequest, 'TokenizeRequest');

function sanitizeModelId(id) {
  try {
    return native().sanitizeModelId(id);
  } catch (err) {
    throw fromNative(err, 'InvalidParams');
  }
}

function isValidModelIdFormat(id) {
  return typeof id === 'string' && native().isValidModelIdFormat(id);
}

function clamp(value, min, max) {
  return Math.min(Math.max(value, min), max);
}

function normalizeTemperature(t) {
  return t === undefined ? undefined : clamp(t, 0, 2);
}

function normalizeTopP(p) {
  return p === undefined ? undefined : clamp(p, 0, 1);
}

module.exports = {
  validateLoadModelOptions,
  validateGeneratorParams,
  validateTokenizeRequest,
  assertValidLoadModelOptions,
  assertValidGeneratorParams,
  assertValidTokenizeRequest,
  sanitizeModelId,
  isValidModelIdFormat,
  clamp,
  normalizeTemperature,
  normalizeTopP,
};
