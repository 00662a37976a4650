'use strict';
// JS → native argument conversion. Whatever a caller passes must reach the addon as plain JSON:
// napi's serde conversion rejects some JS values with a bare, code-less error and *aborts the
// process* on a BigInt (napi 2.16 `todo!()`), and it recurses without limit into cyclic objects.
// So before anything crosses the boundary:
// * keys holding `undefined` or functions are dropped from objects (spec §5.1: "undefined values
//   are treated as absent"; §15: `onProgress` is a JS callback the addon never sees), and array
//   holes / `undefined` items become `null`;
// * NaN/±Infinity travel as `{nonFiniteNumber: 'NaN' | 'Infinity' | '-Infinity'}`, and other
//   values JSON cannot carry (BigInt, Symbol, a function where a value is expected, a cycle) as
//   `{nonJsonValue: '<kind>'}`: wherever a number/string is expected the addon's own rules then
//   reject a non-number (InvalidParams on that field), and a template variable holding one fails
//   rendering (GenerationError), as §6.1/§7.5 require;
// * any other object (class instance, Date, Map, boxed value, null-prototype object) is read
//   the way napi would read it — its own enumerable string keys — recursively.
// Everything else is passed as is: validating it is the addon's job.

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const MAX_DEPTH = 64;

function toRaw(value, seen = new Set(), depth = 0) {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? value : { nonFiniteNumber: String(value) };
    case 'bigint':
    case 'symbol':
    case 'function':
      return { nonJsonValue: typeof value };
    case 'object':
      break;
    default:
      return value; // string, boolean, undefined (top level only; callers map it to null)
  }
  if (value === null) return null;
  if (seen.has(value) || depth >= MAX_DEPTH) return { nonJsonValue: 'cycle' };
  seen.add(value);
  try {
    if (Array.isArray(value)) {
      const out = new Array(value.length);
      for (let i = 0; i < value.length; i += 1) {
        const v = value[i];
        out[i] = v === undefined ? null : toRaw(v, seen, depth + 1);
      }
      return out;
    }
    const out = {};
    for (const key of Object.keys(value)) {
      const v = value[key];
      if (v === undefined || typeof v === 'function') continue;
      out[key] = toRaw(v, seen, depth + 1);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** Native functions take `null` for "nothing given" (napi cannot express undefined in JSON). */
function toRawArg(value) {
  return value === undefined ? null : toRaw(value);
}

module.exports = { toRaw, toRawArg, isPlainObject };
