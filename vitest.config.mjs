import { defineConfig } from 'vitest/config';

// Contract suite for the public JS API. Files run one at a time: each one drives a real
// in-process engine (its own thread pool), and the timing-sensitive cases (timeouts, aborts)
// must not compete with another file's model for 2 CPU cores.
export default defineConfig({
  test: {
    include: ['__test__/**/*.test.{js,mjs}'],
    pool: 'forks',
    // Hub-shaped ids in the suite (robustness's random strings, models.test's unknown id) must
    // never reach the real Hugging Face hub: only the cache is consulted unless a test's engine
    // opts in with `hub: {offline: false, endpoint: <mock>}` (hub.test.mjs).
    env: { HF_HUB_OFFLINE: '1' },
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
