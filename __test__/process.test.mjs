// §3: the addon must never keep a Node process alive — neither after shutdown nor when the
// caller forgets to shut down. Each case runs in a child process with a hard deadline.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { ROOT, fixture } from './support/env.mjs';

const LLAMA = fixture('llama');

function runChild(source, timeoutMs = 60_000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

const body = (tail) => `
  import { Engine } from 'mlx-serving';
  const engine = new Engine();
  await engine.loadModel(${JSON.stringify(LLAMA)});
  const text = await engine.generate({ model: ${JSON.stringify(LLAMA)}, prompt: 'hi', maxTokens: 4, temperature: 0 });
  ${tail}
  console.log('done', typeof text);
`;

describe('process exit', () => {
  it('exits on its own after shutdown()', async () => {
    const r = await runChild(body('await engine.shutdown();'));
    expect(r.signal, r.err).toBeNull();
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('done string');
  });

  it('exits on its own when the caller never shuts down', async () => {
    const r = await runChild(body(''));
    expect(r.signal, r.err).toBeNull();
    expect(r.code, r.err).toBe(0);
  });

  it('exits with an abandoned, never-finished generator', async () => {
    const r = await runChild(body(`
      const gen = engine.createGenerator({ model: ${JSON.stringify(LLAMA)}, prompt: 'x', maxTokens: 400 });
      await gen.next();
    `));
    expect(r.signal, r.err).toBeNull();
    expect(r.code, r.err).toBe(0);
  });

  it('require() of the package works from CommonJS', async () => {
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, ['-e', `
        const m = require('mlx-serving');
        const e = new m.Engine();
        e.healthCheck().then((h) => console.log(h.status, typeof m.createEngine));
      `], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.on('exit', (code) => resolve({ code, out }));
    });
    expect(r.code).toBe(0);
    expect(r.out.trim()).toBe('unhealthy function');
  });
});
