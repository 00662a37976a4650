import { defineConfig } from 'vitest/config';

// Contract suite for the public JS API. Files run one at a time: each one drives a real
// in-process engine (its own thread pool), and the timing-sensitive cases (timeouts, aborts)
// must not compete with another file's model for 2 CPU cores.
export default defineConfig({
  test: {
    include: ['__test__/**/*.test.{js,mjs}'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
  },
});
