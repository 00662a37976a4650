#!/usr/bin/env node
// The main job of `npm start`: stream a chat answer from the default model to the terminal.
// Usage: npm start -- "your question"   (default: "What is the capital of France?")
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { createEngine } = createRequire(import.meta.url)(root);

const question = process.argv.slice(2).join(' ').trim() || 'What is the capital of France?';
const modelDir = path.join(root, '.cache', 'models', 'SmolLM2-135M-Instruct');

const engine = await createEngine();
try {
  process.stderr.write('[mlx-serving] loading SmolLM2-135M-Instruct...\n');
  const t0 = performance.now();
  await engine.loadModel({
    model: 'SmolLM2-135M-Instruct',
    localPath: modelDir,
    onProgress: (p) => process.stderr.write(`[mlx-serving] ${p.phase}${p.file ? ` ${p.file}` : ''}\n`),
  });
  process.stderr.write(`[mlx-serving] loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s\n\n`);
  process.stdout.write(`> ${question}\n\n`);
  const gen = engine.createGenerator({
    model: 'SmolLM2-135M-Instruct',
    prompt: { messages: [{ role: 'user', content: question }] },
    maxTokens: 256,
    temperature: 0,
  });
  for await (const chunk of gen) {
    if (chunk.type === 'token') process.stdout.write(chunk.token);
    else if (chunk.type === 'metadata') {
      const s = chunk.stats;
      process.stderr.write(`\n\n[mlx-serving] ${s.tokensGenerated} tokens, ${s.tokensPerSecond.toFixed(1)} tok/s, ` +
        `first token after ${(s.timeToFirstToken * 1000).toFixed(0)} ms (${s.finishReason})\n`);
    } else if (chunk.type === 'error') {
      throw new Error(chunk.error.message);
    }
  }
} finally {
  await engine.shutdown();
}
