"""Summarize bench/gpu/results/gpu_raw.jsonl (from bench/gpu/run.sh) into RESULTS-gpu.md."""
import json
import statistics
import sys
from pathlib import Path

here = Path(__file__).parent / "results"
rows = [json.loads(l) for l in open(here / "gpu_raw.jsonl")]
gpu = (here / "gpu.txt").read_text().strip()
bw = (here / "bandwidth.txt").read_text().strip()
bw_tbs = float(bw.split(":")[1].split("TB/s")[0])
WEIGHT_BYTES = {"llama-3.2-1b-shaped": 2 * 1.236e9, "qwen3-4b-shaped": 2 * 4.022e9}


def mmm(vals, d=1):
    v = sorted(vals)
    return f"{v[len(v) // 2]:.{d}f} ({v[0]:.{d}f}–{v[-1]:.{d}f})", v[len(v) // 2]


out = [f"# GPU benchmark: mlx-serving (Rust core) vs mlx-lm 0.32.2, same card, same run\n",
       f"Card: {gpu}. MLX 0.32.2 CUDA (mlx-cuda-13 wheel). {bw}.",
       "Random-weight bf16 models of real shapes made on the card by bench/gpu/make_random_models.py; "
       "prompt 1024 random token ids, 128 generated tokens, greedy, EOS ignored; concurrent streams: 64-token prompts. "
       "Median (min–max) of 3 runs; ratio = ours / mlx-lm medians.\n"]
for model in sorted({r["model"] for r in rows}):
    get = lambda side, key: [r["r"][key] for r in rows if r["model"] == model and r["side"] == side]
    agg = lambda side, n: [r["r"]["aggregate_tps"][n] for r in rows if r["model"] == model and r["side"] == side]
    out.append(f"## {model}\n\n| metric | mlx-serving | mlx-lm | ratio |\n|---|---|---|---|")
    for label, key, d in [("prefill tok/s (1024-token prompt)", "prefill_tps", 0), ("decode tok/s (1 stream)", "decode_tps", 1),
                          ("TTFT 42-token prompt (s)", "ttft_chat_s", 3)]:
        (a, am), (b, bm) = mmm(get("ours", key), d), mmm(get("mlx-lm", key), d)
        out.append(f"| {label} | {a} | {b} | {am / bm:.2f} |")
    for n in sorted({k for r in rows for k in r["r"]["aggregate_tps"]}, key=int):
        (a, am), (b, bm) = mmm(agg("ours", n), 0), mmm(agg("mlx-lm", n), 0)
        out.append(f"| aggregate tok/s, {n} streams | {a} | {b} | {am / bm:.2f} |")
    (a, am), (b, bm) = mmm([x / 2**20 for x in get("ours", "peak_rss_bytes")], 0), mmm([x / 2**20 for x in get("mlx-lm", "peak_rss_bytes")], 0)
    out.append(f"| peak host RSS (MiB) | {a} | {b} | {am / bm:.2f} |")
    if model in WEIGHT_BYTES:
        roof = bw_tbs * 1e12 / WEIGHT_BYTES[model]
        dec_o = statistics.median(get("ours", "decode_tps"))
        dec_m = statistics.median(get("mlx-lm", "decode_tps"))
        out.append(f"\nBandwidth roof (weight bytes per token ÷ measured copy bandwidth): {roof:.0f} tok/s; "
                   f"ours reaches {100 * dec_o / roof:.0f}%, mlx-lm {100 * dec_m / roof:.0f}%.\n")
Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent.parent / "RESULTS-gpu.md").write_text("\n".join(out) + "\n")
print("\n".join(out))
