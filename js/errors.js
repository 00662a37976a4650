'use strict';
// Error classes of the public API (spec §10) and the one place where native errors are re-wrapped.
// The native addon rejects with plain `Error`s whose message is a JSON object
// (docs/NATIVE_API.md "Errors"); callers must get the JS-side `EngineClientError` so that
// `instanceof` works across require/import of the package.

/** All codes of the original `EngineErrorCode` union (§10.1). */
const ENGINE_ERROR_CODES = Object.freeze([
  'ParseError', 'InvalidRequest', 'MethodNotFound', 'InvalidParams', 'ValidationError',
  'InternalError', 'ServerError', 'ModelLoadError', 'GenerationError', 'TokenizerError',
  'GuidanceError', 'ModelNotLoaded', 'RuntimeError', 'TransportError', 'Timeout', 'Cancelled',
  'UnknownError',
]);
const CODE_SET = new Set(ENGINE_ERROR_CODES);

class EngineClientError extends Error {
  /**
   * @param {string} code one of ENGINE_ERROR_CODES
   * @param {string} message
   * @param {Record<string, unknown>} [details] own property only when provided (§10.1)
   */
  constructor(code, message, details) {
    super(message);
    // The original's name is 'EngineError', not the class name (§14.8).
    Object.defineProperty(this, 'name', {
      value: 'EngineError', enumerable: false, writable: true, configurable: true,
    });
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  toObject() {
    const obj = { code: this.code, message: this.message };
    if (this.details !== undefined) obj.details = this.details;
    return obj;
  }
}

/**
 * Request timeout error (§2.2, §12.2). Both constructor forms work: ours
 * `(method, timeout, requestId?, duration?)` and the original's
 * `(message, {method, timeout, requestId?, duration?})`.
 */
class TimeoutError extends EngineClientError {
  constructor(methodOrMessage, timeoutOrDetails, requestId, duration) {
    const original = timeoutOrDetails !== null && typeof timeoutOrDetails === 'object';
    const given = original ? timeoutOrDetails
      : { method: methodOrMessage, timeout: timeoutOrDetails, requestId, duration };
    const details = { method: given.method, timeout: given.timeout };
    if (given.requestId !== undefined) details.requestId = given.requestId;
    if (given.duration !== undefined) details.duration = given.duration;
    // The original's wording (monitors match on "timed out").
    const suffix = given.requestId ? ` (id: ${given.requestId})` : '';
    const message = original ? String(methodOrMessage)
      : `Request timed out after ${given.timeout}ms: ${given.method}${suffix}`;
    super('Timeout', message, details);
    Object.defineProperty(this, 'name', {
      value: 'TimeoutError', enumerable: false, writable: true, configurable: true,
    });
    this.method = details.method;
    this.timeout = details.timeout;
    if (details.requestId !== undefined) this.requestId = details.requestId;
    if (details.duration !== undefined) this.duration = details.duration;
  }
}

function createTimeoutError(method, timeout, requestId, duration) {
  return new TimeoutError(method, timeout, requestId, duration);
}

/** Parse the JSON payload the addon puts in `Error.message`; null when it is not one. */
function parseNativePayload(message) {
  if (typeof message !== 'string' || message.length === 0 || message[0] !== '{') return null;
  try {
    const obj = JSON.parse(message);
    if (obj && typeof obj === 'object' && typeof obj.code === 'string'
        && typeof obj.message === 'string') {
      return obj;
    }
  } catch {
    // not JSON: fall through to the generic mapping
  }
  return null;
}

/**
 * Turn anything thrown by the addon (or by JS) into an `EngineClientError` (§10.2):
 * EngineClientError → unchanged; native JSON payload → its code/message/details;
 * AbortError → Cancelled; /timeout/i → Timeout; else `fallbackCode`.
 */
function fromNative(err, fallbackCode = 'RuntimeError') {
  if (err instanceof EngineClientError) return err;
  const message = err && typeof err === 'object' && 'message' in err ? String(err.message)
    : String(err);
  const payload = parseNativePayload(message);
  if (payload) {
    const code = CODE_SET.has(payload.code) ? payload.code : fallbackCode;
    const details = payload.details && typeof payload.details === 'object'
      ? payload.details : undefined;
    const wrapped = new EngineClientError(code, payload.message, details);
    // Additive (§15): the native domain error knows whether a retry can help.
    if (typeof payload.retryable === 'boolean') {
      Object.defineProperty(wrapped, 'retryable', {
        value: payload.retryable, enumerable: false, writable: true, configurable: true,
      });
    }
    return wrapped;
  }
  if (err && err.name === 'AbortError') return new EngineClientError('Cancelled', message);
  if (/timeout/i.test(message)) return new EngineClientError('Timeout', message);
  return new EngineClientError(fallbackCode, message);
}

/** Plain `{code, message, details?}` for event payloads and error chunks. */
function toErrorObject(err) {
  return err instanceof EngineClientError ? err.toObject()
    : { code: 'RuntimeError', message: String(err && err.message ? err.message : err) };
}

module.exports = {
  ENGINE_ERROR_CODES,
  EngineClientError,
  TimeoutError,
  createTimeoutError,
  fromNative,
  toErrorObject,
};
