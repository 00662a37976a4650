'use strict';
// Request coalescing for the native batch entry points (`batch_tokenize`, `batch_check_draft`):
// calls issued in the same turn of the event loop travel to the engine thread in one round
// trip, as the original's BatchQueue did over IPC. Each call still settles on its own: the
// native batch answers `[{success, result} | {success: false, error}]` in order, and a failed
// entry is rejected exactly as the single-call native method would have rejected it (an `Error`
// carrying the JSON payload, re-wrapped by `fromNative` in the caller).

class Coalescer {
  /**
   * @param {(arg: unknown) => Promise<unknown>} single the one-request native call
   * @param {((args: unknown[]) => Promise<Array<object>>) | null} batch the batched native call;
   *   null when this build of the addon has none (every call then goes through `single`)
   */
  constructor(single, batch) {
    this.single = single;
    this.batch = batch;
    this.pending = null;
  }

  push(arg) {
    if (!this.batch) return this.single(arg);
    return new Promise((resolve, reject) => {
      if (!this.pending) {
        this.pending = [];
        setImmediate(() => this.#flush());
      }
      this.pending.push({ arg, resolve, reject });
    });
  }

  #flush() {
    const items = this.pending;
    this.pending = null;
    if (items.length === 1) {
      const [only] = items;
      call(() => this.single(only.arg)).then(only.resolve, only.reject);
      return;
    }
    call(() => this.batch(items.map((i) => i.arg))).then((results) => {
      items.forEach((item, n) => settle(item, results && results[n]));
    }, (err) => {
      for (const item of items) item.reject(err);
    });
  }
}

/** A native call that may throw synchronously (napi argument conversion) as a promise. */
function call(fn) {
  return new Promise((resolve) => {
    resolve(fn());
  });
}

function settle(item, entry) {
  if (entry && entry.success === true) {
    item.resolve(entry.result);
  } else if (entry && entry.error) {
    item.reject(new Error(JSON.stringify(entry.error)));
  } else {
    item.reject(new Error('batched request returned no result'));
  }
}

module.exports = { Coalescer };
