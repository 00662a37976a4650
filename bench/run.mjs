// `npm run bench`: our engine (Rust core and Node API) and mlx-lm side by side, in one run, on
// the same model folders and the same token-id prompts (greedy, EOS ignored so both emit the same
// number of tokens), repeated; writes bench/results.json and bench/RESULTS.md with min/median/max
// and the machine. Env: BENCH_REPEATS (3), BENCH_GEN (64), BENCH_PROMPT (256),
// BENCH_CONCURRENCY (1,4,8,16), BENCH_MODELS (comma-separated folders; default: the default
// model plus its f16 / 4-bit variants when present).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = (k, d) => process.env[k] ?? d;
const repeats = Number(env('BENCH_REPEATS', 3));
const gen = Number(env('BENCH_GEN', 64));
const promptLen = Number(env('BENCH_PROMPT', 256));
const concurrency = env('BENCH_CONCURRENCY', '1,4,8,16');
const models = env('BENCH_MODELS', '') ? env('BENCH_MODELS', '').split(',') : [
  'SmolLM2-135M-Instruct', 'SmolLM2-135M-Instruct-f16', 'SmolLM2-135M-Instruct-4bit',
].map((m) => path.join(root, '.cache', 'models', m)).filter((d) => fs.existsSync(path.join(d, 'config.json')));
const python = path.join(root, '.venv', 'bin', 'python');
const rustBench = path.join(root, 'target', 'release', 'examples', 'bench_engine');
const log = (m) => process.stderr.write(`[bench] ${m}\n`);

function ids(seed, n, vocab = 49152) {
  // deterministic pseudo-random token ids away from the special/low ids
  let x = seed >>> 0;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return 200 + (x % (vocab - 400));
  });
}

function chatIds(dir) {
  const code = 'import sys,json\nfrom transformers import AutoTokenizer\n'
    + 't=AutoTokenizer.from_pretrained(sys.argv[1])\n'
    + 's=t.apply_chat_template([{"role":"user","content":"What is the capital of France? Answer in one short sentence."}],add_generation_prompt=True,tokenize=False)\n'
    + 'print(json.dumps(t.encode(s,add_special_tokens=False)))';
  return JSON.parse(execFileSync(python, ['-c', code, dir], { encoding: 'utf8' }));
}

const run = (cmd, args) => JSON.parse(execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 }).trim().split('\n').at(-1));

function stats(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return { min: v[0], median: v[Math.floor(v.length / 2)], max: v.at(-1) };
}

log('building the Rust bench binary');
execFileSync('cargo', ['build', '--release', '-q', '-p', 'mlx-serving-core', '--example', 'bench_engine'], { cwd: root, stdio: 'inherit' });
const machine = {
  cpu: (execFileSync('lscpu', { encoding: 'utf8' }).match(/Model name:\s*(.*)/) || [])[1] ?? os.cpus()[0]?.model,
  cores: os.cpus().length,
  memGiB: Math.round(os.totalmem() / 2 ** 30),
  os: `${os.type()} ${os.release()}`,
};
const results = { machine, repeats, gen, promptLen, concurrency, date: new Date().toISOString(), models: {} };
for (const dir of models) {
  const name = path.basename(dir);
  const promptsPath = path.join(os.tmpdir(), `mlx-serving-bench-${name}.json`);
  fs.writeFileSync(promptsPath, JSON.stringify({
    long: ids(1, promptLen), chat: chatIds(dir), batch: Array.from({ length: 16 }, (_, i) => ids(100 + i, 64)),
  }));
  const raw = { ours: [], node: [], mlxlm: [] };
  for (let r = 0; r < repeats; r++) {
    log(`${name}: repeat ${r + 1}/${repeats}: mlx-serving core`);
    raw.ours.push(run(rustBench, [dir, promptsPath, String(gen), concurrency]));
    log(`${name}: repeat ${r + 1}/${repeats}: mlx-serving Node API`);
    raw.node.push(run(process.execPath, [path.join(root, 'bench', 'node_bench.mjs'), dir, promptsPath, String(gen)]));
    log(`${name}: repeat ${r + 1}/${repeats}: mlx-lm`);
    raw.mlxlm.push(run(python, [path.join(root, 'bench', 'mlx_lm_bench.py'), dir, promptsPath, String(gen), concurrency]));
  }
  const summary = {};
  for (const side of ['ours', 'mlxlm']) {
    const rs = raw[side];
    summary[side] = {
      prefill_tps: stats(rs.map((x) => x.prefill_tps)),
      decode_tps: stats(rs.map((x) => x.decode_tps)),
      ttft_chat_s: stats(rs.map((x) => x.ttft_chat_s)),
      peak_rss_MiB: stats(rs.map((x) => x.peak_rss_bytes / 2 ** 20)),
      aggregate_tps: Object.fromEntries(concurrency.split(',').map((c) => [c, stats(rs.map((x) => x.aggregate_tps[c]))])),
    };
  }
  summary.node = { decode_tps: stats(raw.node.map((x) => x.decode_tps)) };
  const perTokenUs = (1 / summary.node.decode_tps.median - 1 / summary.ours.decode_tps.median) * 1e6;
  summary.nodeOverheadUsPerToken = perTokenUs;
  results.models[name] = { summary, raw };
}
fs.writeFileSync(path.join(root, 'bench', 'results.json'), JSON.stringify(results, null, 2));

const f = (x, d = 1) => (x === undefined ? 'n/a' : x.toFixed(d));
const mmm = (s, d = 1) => `${f(s.median, d)} (${f(s.min, d)}–${f(s.max, d)})`;
let md = `# Benchmarks: mlx-serving vs mlx-lm\n\nGenerated by \`npm run bench\` on ${results.date}.\n\n`;
md += `Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memGiB} GiB, ${machine.os}; MLX 0.32.2 CPU backend; mlx-lm 0.32.2.\n`;
md += `Greedy, EOS ignored; prompt ${promptLen} random token ids for prefill/decode, ${gen} generated tokens; `;
md += `concurrent streams use 64-token prompts and ${gen} tokens each. Median (min–max) of ${repeats} runs. Ratio = ours / mlx-lm (medians; for TTFT and RSS lower is better).\n\n`;
for (const [name, { summary: s }] of Object.entries(results.models)) {
  md += `## ${name}\n\n| metric | mlx-serving | mlx-lm | ratio |\n|---|---|---|---|\n`;
  const row = (label, a, b, d = 1) => { md += `| ${label} | ${mmm(a, d)} | ${mmm(b, d)} | ${f(a.median / b.median, 2)} |\n`; };
  row(`prefill tok/s (${promptLen}-token prompt)`, s.ours.prefill_tps, s.mlxlm.prefill_tps);
  row('decode tok/s (1 stream)', s.ours.decode_tps, s.mlxlm.decode_tps);
  row('TTFT chat prompt (s)', s.ours.ttft_chat_s, s.mlxlm.ttft_chat_s, 3);
  for (const c of concurrency.split(',')) row(`aggregate tok/s, ${c} streams`, s.ours.aggregate_tps[c], s.mlxlm.aggregate_tps[c]);
  row('peak RSS (MiB)', s.ours.peak_rss_MiB, s.mlxlm.peak_rss_MiB, 0);
  md += `\nNode API decode: ${mmm(s.node.decode_tps)} tok/s; Node-layer overhead ≈ ${f(s.nodeOverheadUsPerToken, 0)} µs/token vs the Rust core.\n\n`;
}
fs.writeFileSync(path.join(root, 'bench', 'RESULTS.md'), md);
log('wrote bench/RESULTS.md and bench/results.json');
process.stdout.write(md);
