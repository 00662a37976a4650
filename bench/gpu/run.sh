#!/usr/bin/env bash
# GPU benchmark on the lent NVIDIA machine (no registry there): installs the carried MLX CUDA
# wheels into the Python that holds the nvidia-* packages, makes random-weight models of real
# shapes, then runs our Rust core bench binary and mlx-lm side by side on the same card.
# usage (from the repo root on the GPU machine): bash bench/gpu/run.sh <carry_dir> <out_dir>
set -euo pipefail
CARRY=$1; OUT=$2
PY=${PYTHON:-python3}
SP=$($PY -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
if ! $PY -c 'import mlx.core' 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile "$CARRY"/*.whl
fi
$PY -c 'import mlx.core as mx; print("mlx", mx.__version__, mx.default_device())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
MODELS=/root/bench-models
$PY bench/gpu/make_random_models.py "$CARRY/tok" "$MODELS" 2>&1 | tail -3
export LD_LIBRARY_PATH="$SP/mlx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
GEN=${GEN:-128}; CONC=${CONC:-1,16}
# decode figures: median of 5 long-prompt streams per process on both sides (these hosts drift)
export BENCH_DECODE_REPEAT=${BENCH_DECODE_REPEAT:-5}
$PY bench/gpu/make_prompts.py > /tmp/prompts.json  # the same prompts for every model and side
for m in ${BENCH_GPU_MODELS:-llama-3.2-1b-shaped qwen3-4b-shaped llama-3.2-1b-shaped-4bit qwen3-4b-shaped-4bit}; do
  for r in 1 2 3; do
    echo "== $m run $r" >&2
    "$CARRY/bench_engine" "$MODELS/$m" /tmp/prompts.json "$GEN" "$CONC" | tail -1 | sed "s/^/{\"model\":\"$m\",\"side\":\"ours\",\"run\":$r,\"r\":/; s/\$/}/" >> "$OUT/gpu_raw.jsonl"
    # optional A/B: an earlier build of the bench binary in the same run (side "ours-prev")
    if [ -n "${PREV_BIN:-}" ]; then
      "$PREV_BIN" "$MODELS/$m" /tmp/prompts.json "$GEN" "$CONC" | tail -1 | sed "s/^/{\"model\":\"$m\",\"side\":\"ours-prev\",\"run\":$r,\"r\":/; s/\$/}/" >> "$OUT/gpu_raw.jsonl"
    fi
    $PY bench/mlx_lm_bench.py "$MODELS/$m" /tmp/prompts.json "$GEN" "$CONC" | tail -1 | sed "s/^/{\"model\":\"$m\",\"side\":\"mlx-lm\",\"run\":$r,\"r\":/; s/\$/}/" >> "$OUT/gpu_raw.jsonl"
  done
done
# device copy bandwidth (for the memory-bandwidth roof)
$PY - <<'PY' | tee "$OUT/bandwidth.txt"
import time, mlx.core as mx
a = mx.zeros((1 << 30,), dtype=mx.uint8); mx.eval(a)
for _ in range(3): b = a + 1; mx.eval(b)
t = time.perf_counter(); n = 20
for _ in range(n): b = a + 1; mx.eval(b)
dt = (time.perf_counter() - t) / n
print(f"device copy bandwidth: {2 * a.nbytes / dt / 1e12:.2f} TB/s (read+write of 1 GiB)")
PY
