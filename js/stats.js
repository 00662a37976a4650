'use strict';
// §12.3 `GenerationStatsCollector`: caller-side timing of a token stream (seconds, like
// GenerationStats). Pure JS: it measures what the caller observes, not engine internals.

const now = () => performance.now();

class GenerationStatsCollector {
  #startTime = null;
  #firstTokenTime = null;
  #endTime = null;
  #count = 0;
  #autoStart;

  constructor(options = {}) {
    this.#autoStart = options.autoStart !== false;
  }

  start() {
    if (this.#startTime === null) this.#startTime = now();
  }

  update(token) {
    void token;
    if (this.#startTime === null) {
      if (!this.#autoStart) return;
      this.start();
    }
    if (this.#firstTokenTime === null) this.#firstTokenTime = now();
    this.#count += 1;
  }

  stop() {
    if (this.#startTime !== null && this.#endTime === null) this.#endTime = now();
  }

  reset() {
    this.#startTime = null;
    this.#firstTokenTime = null;
    this.#endTime = null;
    this.#count = 0;
  }

  get totalTime() {
    if (this.#startTime === null) return 0;
    const end = this.#endTime ?? now();
    return Math.max((end - this.#startTime) / 1000, 0.0001);
  }

  get timeToFirstToken() {
    if (this.#startTime === null || this.#firstTokenTime === null) return 0;
    return (this.#firstTokenTime - this.#startTime) / 1000;
  }

  get tokensPerSecond() {
    const total = this.totalTime;
    return total > 0 ? this.#count / total : 0;
  }

  get tokensGenerated() {
    return this.#count;
  }

  get isStarted() {
    return this.#startTime !== null;
  }

  get hasTokens() {
    return this.#count > 0;
  }

  getStats() {
    return {
      tokensGenerated: this.#count,
      tokensPerSecond: this.tokensPerSecond,
      timeToFirstToken: this.timeToFirstToken,
      totalTime: this.totalTime,
    };
  }
}

module.exports = { GenerationStatsCollector };
