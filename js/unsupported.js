'use strict';
// Members whose native side does not exist yet (draft compatibility report). They fail
// loudly with the spec's code for that operation instead of pretending to succeed, so callers
// can detect the gap (spec §7.8; `RuntimeInfo.capabilities` does not list them either).

const { EngineClientError } = require('./errors');

function notSupported(code, member) {
  return new EngineClientError(code, `${member} is not supported by this build of mlx-serving`,
    { member, supported: false });
}

module.exports = { notSupported };
