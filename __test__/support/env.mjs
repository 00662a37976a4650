// Shared paths and small helpers for the contract suite. The suite needs what `npm test`'s setup
// step produces (the built addon, the default model and the tiny fixtures); missing pieces fail
// loudly with the command to run instead of silently skipping.
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, cpSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const require = createRequire(import.meta.url);

export const CACHE = path.join(ROOT, '.cache');
export const FIXTURES = path.join(CACHE, 'fixtures');
export const DEFAULT_MODEL = path.join(CACHE, 'models', 'SmolLM2-135M-Instruct');

export function fixture(name) {
  const dir = path.join(FIXTURES, name);
  if (!existsSync(path.join(dir, 'config.json'))) {
    throw new Error(`test fixture missing: ${dir} (run \`npm test\`, whose setup step builds it)`);
  }
  return dir;
}

export function defaultModel() {
  if (!existsSync(path.join(DEFAULT_MODEL, 'config.json'))) {
    throw new Error(`default model missing: ${DEFAULT_MODEL} (run \`npm test\` / \`npm start\`)`);
  }
  return DEFAULT_MODEL;
}

/** Copy a fixture into a fresh temp dir (to damage it); returns {dir, cleanup}. */
export function copyFixture(name) {
  const base = mkdtempSync(path.join(tmpdir(), 'mlx-serving-test-'));
  const dir = path.join(base, name);
  cpSync(fixture(name), dir, { recursive: true });
  return { dir, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

export function tempDir() {
  const dir = mkdtempSync(path.join(tmpdir(), 'mlx-serving-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Drain a generator into an array of chunks. */
export async function collect(gen) {
  const chunks = [];
  for await (const chunk of gen) chunks.push(chunk);
  return chunks;
}

/** The rejection of a promise (fails if it resolves). */
export async function rejectionOf(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

/** Poll until predicate() is truthy or the deadline passes; returns the last value. */
export async function waitFor(predicate, { timeoutMs = 5000, intervalMs = 20 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let value = await predicate();
  while (!value && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, intervalMs));
    value = await predicate();
  }
  return value;
}

/** The rejection of a generator's first next(); closes the generator if it yielded instead. */
export async function firstNextRejection(gen) {
  let result;
  try {
    result = await gen.next();
  } catch (err) {
    return err;
  }
  await gen.return(undefined);
  throw new Error(`expected the first next() to reject, but it yielded ${JSON.stringify(result)}`);
}
