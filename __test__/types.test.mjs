// Spec §1 "Types" / §2.7: the hand-written index.d.ts must accept a consumer written against the
// original @defai.digital/mlx-serving@1.2.1 types (__test__/types/consumer.ts, incl. the original
// contract test's type-level key snapshot and EventEmitter<EngineEvents> generics).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT, require } from './support/env.mjs';

describe('TypeScript consumer (tsc --noEmit)', () => {
  it('type-checks __test__/types/consumer.ts against index.d.ts', () => {
    const tsc = require.resolve('typescript/bin/tsc');
    const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', path.join(ROOT, '__test__', 'types')], {
      cwd: ROOT, encoding: 'utf8',
    });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
    expect(r.status).toBe(0);
  }, 120_000);
});
