'use strict';
// Spec §7.12 vision generation over the native vision stream: Buffer/Uint8Array image sources
// become data URIs (the native side takes strings: path, URL, data URI, base64), chunks are the
// stream's own, and an error chunk is thrown (vision failures are thrown, not yielded), with an
// abort surfacing as `Cancelled`.

const { EngineClientError } = require('./errors');
const { streamChunks } = require('./stream');
const { toRawArg } = require('./raw');

function toSource(source) {
  if (source instanceof Uint8Array) {
    return `data:application/octet-stream;base64,${Buffer.from(source).toString('base64')}`;
  }
  return source;
}

function toImage(image) {
  if (image instanceof Uint8Array || typeof image === 'string') return { source: toSource(image) };
  if (image && typeof image === 'object') return { ...image, source: toSource(image.source) };
  return image;
}

/** The request with every image source in the string form the native side reads. */
function nativeVisionParams(params) {
  if (!params || typeof params !== 'object') return params;
  const out = { ...params };
  if (Array.isArray(params.image)) out.image = params.image.map(toImage);
  else if (params.image !== undefined && params.image !== null) out.image = toImage(params.image);
  return out;
}

/**
 * @param {() => Promise<object>} open resolves with the native vision stream (rejections are
 *   already EngineClientErrors announced by the caller)
 * @param {(e: EngineClientError) => EngineClientError} fail announces a mid-stream failure
 */
async function* visionChunks(open, options, fail) {
  for await (const chunk of streamChunks(open, options)) {
    if (chunk.type === 'error') {
      const e = chunk.error;
      throw fail(new EngineClientError(e.code ?? 'GenerationError', e.message, e.details));
    }
    yield chunk;
  }
}

/**
 * The §7.12 generator: `start` resolves with the started native engine; the stream opens at the
 * first next(), and every failure goes through `fail` (announced, then thrown).
 */
function visionGenerator(start, params, options, fail) {
  const opts = options && typeof options === 'object' ? options : {};
  const open = async () => {
    try {
      const native = await start();
      const streamOptions = {};
      if (opts.streamId !== undefined) streamOptions.streamId = opts.streamId;
      if (opts.timeoutMs !== undefined) streamOptions.timeoutMs = opts.timeoutMs;
      return await native.createVisionStream(toRawArg(nativeVisionParams(params)), toRawArg(streamOptions));
    } catch (err) {
      throw fail(err);
    }
  };
  return visionChunks(open, opts, fail);
}

module.exports = { nativeVisionParams, visionChunks, visionGenerator };
