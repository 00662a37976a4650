// Per-token decode overhead of structured output (llguidance masks) on the default model.
// Usage: node bench/guidance.mjs [rounds=5] [tokens=64]
// Each round decodes `tokens` tokens unconstrained and `tokens` tokens under a JSON schema whose
// document is exactly that long in practice (an array of small integers that must have many
// items), interleaved so both see the same machine load; reports decode tok/s (stats.
// tokensPerSecond: tokens after the first / decode time) and the per-token time difference.
import { Engine } from '../index.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = process.env.MLX_SERVING_BENCH_MODEL ?? path.join(ROOT, '.cache/models/SmolLM2-135M-Instruct');
const rounds = Number(process.argv[2] ?? 5);
const tokens = Number(process.argv[3] ?? 64);

// A short plain prompt: prefill is the same for both and is not what is measured.
const prompt = 'A long list of numbers:';
const schema = {
  type: 'array', items: { type: 'integer', minimum: 0, maximum: 99 }, minItems: 200, maxItems: 400,
};

const engine = new Engine();
await engine.loadModel(MODEL);

async function run(structured) {
  let meta;
  let n = 0;
  for await (const c of engine.createGenerator({ model: MODEL, prompt, maxTokens: tokens, temperature: 0, ...(structured ? { structured } : {}) })) {
    if (c.type === 'token') n += 1;
    else meta = c;
  }
  if (meta.type !== 'metadata') throw new Error(JSON.stringify(meta));
  return { n, tps: meta.stats.tokensPerSecond, ttft: meta.stats.timeToFirstToken };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
await run(null); // warm-up
await run({ format: 'json', schema }); // warm-up, and builds the tokenizer trie once
const plain = [];
const guided = [];
for (let i = 0; i < rounds; i++) {
  plain.push(await run(null));
  guided.push(await run({ format: 'json', schema }));
}
const p = median(plain.map((r) => r.tps));
const g = median(guided.map((r) => r.tps));
const fmt = (x) => x.toFixed(2);
console.log(`model: ${path.basename(MODEL)}; rounds: ${rounds}; tokens/run: ${tokens}`);
console.log(`unconstrained: tokens ${plain.map((r) => r.n).join(',')} tok/s ${plain.map((r) => fmt(r.tps)).join(', ')} → median ${fmt(p)} (${fmt(1000 / p)} ms/token)`);
console.log(`constrained:   tokens ${guided.map((r) => r.n).join(',')} tok/s ${guided.map((r) => fmt(r.tps)).join(', ')} → median ${fmt(g)} (${fmt(1000 / g)} ms/token)`);
console.log(`ttft median: unconstrained ${fmt(median(plain.map((r) => r.ttft)) * 1000)} ms, constrained ${fmt(median(guided.map((r) => r.ttft)) * 1000)} ms`);
console.log(`overhead per token: ${fmt(1000 / g - 1000 / p)} ms (${fmt((p / g - 1) * 100)} % slower decode)`);
await engine.shutdown();
