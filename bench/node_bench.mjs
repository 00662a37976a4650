// The Node side of bench/run.mjs: the same single-stream decode as the Rust core bench, but
// through the public JS API (createGenerator + for await), to measure the Node layer's
// per-token overhead. Prints one JSON object.
// usage: node bench/node_bench.mjs <model_dir> <prompts.json> <gen_tokens>
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { createEngine } = createRequire(import.meta.url)(root);
const [dir, promptsPath, genArg] = process.argv.slice(2);
const gen = Number(genArg);
const prompts = JSON.parse(fs.readFileSync(promptsPath, 'utf8'));

const engine = await createEngine({ promptCache: { enabled: false } });
await engine.loadModel({ model: 'bench', localPath: dir });
const params = (tokens, maxTokens) => ({
  model: 'bench', prompt: { tokens }, maxTokens, temperature: 0, ignoreEos: true,
});
for await (const _ of engine.createGenerator(params(prompts.chat, 2))) { /* warm-up */ }
const start = performance.now();
let first = null;
let n = 0;
for await (const chunk of engine.createGenerator(params(prompts.long, gen))) {
  if (chunk.type !== 'token') continue;
  n += 1;
  if (first === null) first = performance.now();
}
const end = performance.now();
await engine.shutdown();
console.log(JSON.stringify({
  engine: 'mlx-serving (Node API)',
  ttft_long_s: (first - start) / 1000,
  decode_tps: (n - 1) / ((end - first) / 1000),
  peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
}));
