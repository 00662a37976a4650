'use strict';
// JS → native argument conversion. JSON has no `undefined` and no functions, so before a caller's
// options cross the napi boundary we drop keys holding them (spec §5.1: "undefined values are
// treated as absent"; §15: `onProgress` is a JS callback the addon never sees). JSON has no
// NaN/±Infinity either (napi's serde conversion throws a bare, code-less error on them), so those
// travel as the marker object `{nonFiniteNumber: 'NaN' | 'Infinity' | '-Infinity'}`: wherever a
// number is expected the addon's own rules then reject a non-number (InvalidParams on that
// field), and a template variable holding one fails rendering (GenerationError), as §6.1/§7.5
// require. Everything else is passed as is: validating it is the addon's job.

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function toRaw(value) {
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return { nonFiniteNumber: String(value) };
  }
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : toRaw(v)));
  if (!isPlainObject(value)) return value;
  const out = {};
  for (const key of Object.keys(value)) {
    const v = value[key];
    if (v === undefined || typeof v === 'function') continue;
    out[key] = toRaw(v);
  }
  return out;
}

/** Native functions take `null` for "nothing given" (napi cannot express undefined in JSON). */
function toRawArg(value) {
  return value === undefined ? null : toRaw(value);
}

module.exports = { toRaw, toRawArg, isPlainObject };
