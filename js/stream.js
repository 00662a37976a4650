'use strict';
// Turns a pull-based native stream (docs/NATIVE_API.md `NativeStream`) into the real
// `AsyncGenerator` the public API promises (spec §1, §7.1, §7.9). Only JavaScript semantics live
// here: laziness until the first next(), `cumulativeText`, cancellation on return()/throw()/break,
// and AbortSignal wiring. Chunks themselves come from Rust unchanged.

const { EngineClientError, fromNative } = require('./errors');

const TERMINAL = new Set(['metadata', 'error']);

/**
 * @param {() => Promise<object>} openStream resolves with a NativeStream (rejects already
 *   re-wrapped as EngineClientError) — called on the first next() only.
 * @param {{signal?: AbortSignal}} options
 * @param {{onToken?: Function, onMetadata?: Function, onErrorChunk?: Function}} [observer]
 *   telemetry callbacks; exceptions they throw are the caller's to swallow.
 */
async function* streamChunks(openStream, options, observer = {}) {
  const given = options && options.signal;
  // Anything that is not an EventTarget-style signal is ignored rather than crashing later.
  const signal = given && typeof given.addEventListener === 'function' ? given : undefined;
  // §7.9: an already aborted signal does no work at all.
  if (signal && signal.aborted) {
    throw new EngineClientError('Cancelled', 'Generation aborted before it started');
  }
  const stream = await openStream();
  let ended = false;
  let onAbort;
  try {
    if (signal) {
      // Abort between createStream and here, or later while we wait on next(): the native
      // stream then ends with its single `Cancelled` error chunk, which we yield like any other.
      onAbort = () => stream.cancel('abort');
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
    let text = '';
    let tokens = 0;
    while (!ended) {
      let batch;
      try {
        batch = await stream.next();
      } catch (err) {
        // A rejected pull mid-stream is still a mid-stream failure: keep the protocol
        // (exactly one terminal chunk) by yielding it as the error chunk.
        ended = true;
        yield { type: 'error', error: fromNative(err, 'GenerationError').toObject() };
        return;
      }
      if (!batch || batch.length === 0) {
        ended = true;
        return;
      }
      for (const chunk of batch) {
        if (chunk.type === 'token') {
          text += chunk.token;
          tokens += 1;
          const out = { ...chunk, cumulativeText: text };
          if (observer.onToken) observer.onToken(out, tokens);
          yield out;
        } else {
          if (TERMINAL.has(chunk.type)) ended = true;
          if (chunk.type === 'metadata' && observer.onMetadata) observer.onMetadata(chunk.stats);
          if (chunk.type === 'error' && observer.onErrorChunk) observer.onErrorChunk(chunk.error);
          yield chunk;
          if (ended) return;
        }
      }
    }
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
    // break / return() / throw() land here with the stream still open: free its slot now.
    if (!ended) {
      try {
        stream.cancel('return');
      } catch {
        // cancel is idempotent natively; a failure here must not mask the caller's exit path
      }
    }
  }
}

module.exports = { streamChunks };
