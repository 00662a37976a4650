#!/usr/bin/env python3
"""CPU backend benchmark, side by side in one run on the same model folders (issue 8,
DESIGN.md decision 8). Run with the project's .venv python from the repo root:

    .venv/bin/python bench/cpu_backend.py [--runs 3] [--models f16,4bit]

Rows, for SmolLM2-135M-Instruct stored in f16 and as mlx-lm's 4-bit conversion (group 64,
f16 scales), made by scripts/models/make_bench_models.sh:
  * mlx-lm as users run it: weights as stored, the mlx-cpu wheel's bundled reference BLAS;
  * mlx-lm given the same advantages: every floating parameter cast to f32 (for 4-bit: f32
    scales/biases), Debian's OpenBLAS via LD_PRELOAD (this benchmark process only);
  * 4-bit only: mlx-lm dequantized to dense f32 + OpenBLAS (the form our engine picks);
  * ours (mlx-serving, `computeDtype: 'auto'`; crates/core/examples/cpu_backend.rs), ours
    with OPENBLAS_NUM_THREADS=1 (the thread question), and ours with MLX_SERVING_GEMV=0 (MLX's
    one-row products left to OpenBLAS's GEMM instead of our GEMV forwarding, services/blas_rows.rs).
Metrics: prefill tok/s (512-token prompt; mlx-lm: generate_step until its first token),
decode tok/s (1 stream, 128 greedy tokens after a 42-token prompt, EOS ignored), TTFT of a
42-token chat prompt (chat template + tokenization + prefill + first token); min/median/max
over --runs runs after one warm-up. mlx-lm as run on the 4-bit model is ~0.3 tok/s, so that row
uses shorter prefill/decode lengths and one TTFT run (noted in the table); rates are per token.
Runs are interleaved across configurations (run i of each before run i+1 of any).
Writes bench/RESULTS-cpu.md and bench/results-cpu.json.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / ".cache" / "models"
CHAT_MSG = "Give me three tips for writing clear and maintainable code."  # 42 tokens templated
PREFILL_TEXT = ("The history of computing is a story of abstraction layered on abstraction. "
                "Early machines were programmed by rewiring panels; then came stored programs, "
                "assemblers, compilers, operating systems and networks. ")
OPENBLAS_DIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def openblas():
    for d in OPENBLAS_DIRS:
        p = Path(d) / "libopenblas.so.0"
        if p.exists():
            return str(p)
    return None


# --------------------------------------------------------------------------------- mlx-lm worker
def worker(a):
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.generate import generate_step, stream_generate

    mx.set_default_device(mx.cpu)
    model, tok = mlx_lm.load(a.model)
    if a.dequantize:
        from mlx_lm.utils import dequantize_model
        model = dequantize_model(model)
    if a.f32:
        model.set_dtype(mx.float32)
    ids = json.loads(Path(a.ids).read_text())
    prefill_ids = ids["prefill"][: a.prefill_n]
    decode_prompt = mx.array(ids["decode_prompt"])

    def prefill_s(p):
        t = time.perf_counter()
        for _ in generate_step(mx.array(p), model, max_tokens=1):
            break
        return time.perf_counter() - t

    def decode_s(n):
        times = []
        for _, _ in generate_step(decode_prompt, model, max_tokens=n + 1):
            times.append(time.perf_counter())
        return times[-1] - times[0]

    def ttft_s():
        t = time.perf_counter()
        prompt = tok.apply_chat_template([{"role": "user", "content": CHAT_MSG}], add_generation_prompt=True)
        for _ in stream_generate(model, tok, prompt, max_tokens=1):
            break
        return time.perf_counter() - t

    prefill_s(prefill_ids[:2])  # warm-up
    out = {"impl": "mlx-lm", "prefillTokens": len(prefill_ids), "decodeTokens": a.decode_n,
           "prefill_tok_s": [len(prefill_ids) / prefill_s(prefill_ids) for _ in range(a.runs)],
           "decode_tok_s": [a.decode_n / decode_s(a.decode_n) for _ in range(a.runs)],
           "ttft_s": [ttft_s() for _ in range(a.ttft_runs)],
           "dtypes": sorted({str(v.dtype) for _, v in mlx_lm.utils.tree_flatten(model.parameters())})}
    print(json.dumps(out))


# ---------------------------------------------------------------------------------- driver
def run_json(cmd, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    log("running: " + " ".join(f"{k}={v}" for k, v in (env_extra or {}).items()) + " " + " ".join(cmd[1:4]) + " ...")
    t = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {cmd}")
    line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
    res = json.loads(line)
    res["wallSeconds"] = round(time.time() - t, 1)
    return res


def stats(xs):
    if not xs:
        return None
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def machine():
    model, cores = platform.processor() or "unknown", os.cpu_count()
    try:
        for line in subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "cores": cores, "os": platform.platform()}


def make_ids(tmp):
    from transformers import AutoTokenizer  # ships with mlx-lm
    tok = AutoTokenizer.from_pretrained(str(MODELS / "SmolLM2-135M-Instruct"))
    text = PREFILL_TEXT * 40
    prefill = tok.encode(text)[:512]
    assert len(prefill) == 512
    chat = tok.apply_chat_template([{"role": "user", "content": CHAT_MSG}], add_generation_prompt=True, tokenize=False)
    chat_ids = tok.encode(chat)
    p = Path(tmp) / "ids.json"
    p.write_text(json.dumps({"prefill": prefill, "decode_prompt": chat_ids}))
    return p, len(chat_ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--ids")
    ap.add_argument("--f32", action="store_true")
    ap.add_argument("--dequantize", action="store_true")
    ap.add_argument("--prefill-n", type=int, default=512)
    ap.add_argument("--decode-n", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ttft-runs", type=int, default=None)
    ap.add_argument("--models", default="f16,4bit")
    ap.add_argument("--slow-prefill-n", type=int, default=8)
    ap.add_argument("--slow-decode-n", type=int, default=4)
    a = ap.parse_args()
    if a.ttft_runs is None:
        a.ttft_runs = a.runs
    if a.worker:
        return worker(a)

    subprocess.run(["bash", "scripts/models/make_bench_models.sh"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "mlx-serving-core", "--example", "cpu_backend"],
                   cwd=ROOT, check=True)
    ours_bin = str(ROOT / "target" / "release" / "examples" / "cpu_backend")
    blas = openblas()
    preload = {"LD_PRELOAD": blas} if blas else {}
    py = sys.executable
    results = {"machine": machine(), "runs": a.runs, "openblas": blas, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        ids, chat_len = make_ids(tmp)
        results["chatPromptTokens"] = chat_len
        configs = []
        for m in a.models.split(","):
            folder = str(MODELS / f"SmolLM2-135M-Instruct-{m}")
            base = [py, __file__, "--worker", "--model", folder, "--ids", str(ids), "--runs", "1"]
            slow = m == "4bit"
            configs.append((m, "mlx-lm as users run it (as stored, reference BLAS)", base + (
                ["--prefill-n", str(a.slow_prefill_n), "--decode-n", str(a.slow_decode_n)] if slow else []), {}, slow))
            configs.append((m, "mlx-lm + same advantages (f32, OpenBLAS)", base + ["--f32"], preload, False))
            if slow:
                configs.append((m, "mlx-lm dequantized f32 + OpenBLAS", base + ["--f32", "--dequantize"], preload, False))
            ours = [ours_bin, "--model", folder, "--ids", str(ids), "--runs", "1", "--chat", CHAT_MSG]
            configs.append((m, "ours (mlx-serving, computeDtype auto)", ours, {}, False))
            configs.append((m, "ours, OPENBLAS_NUM_THREADS=1", ours, {"OPENBLAS_NUM_THREADS": "1"}, False))
            configs.append((m, "ours, MLX_SERVING_GEMV=0 (one-row products as OpenBLAS GEMM)", ours, {"MLX_SERVING_GEMV": "0"}, False))
        # Interleaved: run i of every configuration before run i+1 of any, so load drift from
        # other jobs on a shared machine spreads over all rows instead of skewing one.
        rows = {}
        for i in range(a.runs):
            for m, name, cmd, env, slow in configs:
                c = list(cmd)
                if slow and cmd[1] == __file__:  # TTFT of the very slow row: first run only
                    c += ["--ttft-runs", "1" if i == 0 else "0"]
                elif cmd[1] == __file__:
                    c += ["--ttft-runs", "1"]
                r = run_json(c, env)
                row = rows.setdefault((m, name), dict(r, model=m, config=name, prefill_tok_s=[], decode_tok_s=[], ttft_s=[]))
                for k in ("prefill_tok_s", "decode_tok_s", "ttft_s"):
                    row[k] += r[k]
                log(f"run {i + 1}/{a.runs} {m} | {name}: prefill {r['prefill_tok_s']} decode {r['decode_tok_s']} ttft {r['ttft_s']}")
        results["rows"] = list(rows.values())
    (ROOT / "bench" / "results-cpu.json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results)


def fmt(s, nd=1):
    if not s:
        return "—"
    return f"{s['median']:.{nd}f} ({s['min']:.{nd}f}–{s['max']:.{nd}f})"


def write_markdown(res):
    mach = res["machine"]
    lines = ["# CPU backend benchmark (generated by `bench/cpu_backend.py`)", "",
             f"Machine: **{mach['cpu']}, {mach['cores']} cores** ({mach['os']}); shared with other jobs, so "
             f"absolute numbers are noisy — compare ratios within one run. MLX 0.32.2 CPU, mlx-lm 0.32.2, "
             f"SmolLM2-135M-Instruct. {res['runs']} runs after a warm-up: median (min–max). "
             f"Prefill: 512-token prompt; decode: 1 stream, 128 greedy tokens after a "
             f"{res['chatPromptTokens']}-token prompt, EOS ignored; TTFT: {res['chatPromptTokens']}-token chat prompt.", "",
             "| model | implementation | prefill tok/s | decode tok/s | chat TTFT s | weights in memory |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        note = ""
        if r["prefillTokens"] != 512 or r["decodeTokens"] != 128:
            note = f" ¹"
        mem = f"{r['memoryBytes'] / 1e6:.0f} MB ({r['dtype']})" if "memoryBytes" in r else ", ".join(r.get("dtypes", []))
        lines.append(f"| {r['model']} | {r['config']}{note} | {fmt(stats(r['prefill_tok_s']), 2)} | "
                     f"{fmt(stats(r['decode_tok_s']), 2)} | {fmt(stats(r['ttft_s']), 3)} | {mem} |")
    slow = [r for r in res["rows"] if r["prefillTokens"] != 512 or r["decodeTokens"] != 128]
    if slow:
        r = slow[0]
        lines += ["", f"¹ too slow for the full lengths: prefill over the first {r['prefillTokens']} prompt "
                  f"tokens, decode {r['decodeTokens']} tokens, TTFT 1 run (rates are per token).", ""]
    lines += ratios(res)
    (ROOT / "bench" / "RESULTS-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def ratios(res):
    out = ["## Ratios (medians) and the issue-8 targets", "",
           "| model | metric | ours / mlx-lm as run | target | ours / mlx-lm same advantages | target |",
           "|---|---|---|---|---|---|"]
    for m in sorted({r["model"] for r in res["rows"]}):
        rows = {r["config"]: r for r in res["rows"] if r["model"] == m}
        ours = next(r for k, r in rows.items() if k.startswith("ours ("))
        asrun = next(r for k, r in rows.items() if k.startswith("mlx-lm as users"))
        same = next(r for k, r in rows.items() if k.startswith("mlx-lm + same"))
        med = lambda r, k: statistics.median(r[k]) if r[k] else float("nan")
        for metric, key, t_run, t_same in [("prefill", "prefill_tok_s", 10.0, 1.0),
                                            ("decode", "decode_tok_s", 4.0 if m == "f16" else 30.0, 1.1)]:
            x, y = med(ours, key) / med(asrun, key), med(ours, key) / med(same, key)
            out.append(f"| {m} | {metric} | {x:.1f}× {'✅' if x >= t_run else '❌'} | ≥ {t_run:g}× | "
                       f"{y:.2f}× {'✅' if y >= t_same else '❌'} | ≥ {t_same:g}× |")
        t = med(ours, "ttft_s")
        out.append(f"| {m} | chat TTFT | {t:.3f} s vs {med(asrun, 'ttft_s'):.2f} s {'✅' if t <= 0.3 else '❌'} | ≤ 0.3 s | "
                   f"{t:.3f} s vs {med(same, 'ttft_s'):.3f} s | |")
    return out


if __name__ == "__main__":
    main()
