#!/usr/bin/env bash
# Vision benchmark (issue #9): mlx-serving's Rust core (crates/core/examples/bench_vision.rs) beside
# mlx-vlm 0.7.6 (bench/vision/mlx_vlm_bench.py) on the same random-weight Qwen2-VL-shaped model
# folder, the same 1024x768 PNG, prompt, token count and warm-up. Each round starts one process
# per side (load, warm-up, RUNS measured requests); rounds alternate which side goes first, so
# drift on a shared host falls on both. Writes raw rows and a summary (bench/vision/summarize.py).
#
# CPU (this repo's dev host):  bash bench/vision/run.sh
# GPU (lent machine, no registry): bash bench/vision/run.sh --gpu <carry_dir>
#   carry_dir holds bench_vision (built on a CUDA host), the MLX CUDA wheels and the mlx-vlm
#   wheels listed in bench/RESULTS-vision.md ("GPU variant"); the model is made there with MLX.
# Environment: SHAPE (qwen2-vl-2b-l4 on CPU, qwen2-vl-2b on GPU), DTYPE (float32 on CPU, bfloat16
# on GPU), TOKENS (16 CPU / 128 GPU), ROUNDS (3), RUNS (measured requests per process, 1),
# OUT (bench/vision/results/<label>), PYTHON (.venv-vlm/bin/python on CPU, python3 on GPU),
# BENCH_WARMUP (0 skips each process's warm-up request on both sides).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[mlx-serving] $*" >&2; }

GPU=0; CARRY=
if [ "${1:-}" = "--gpu" ]; then GPU=1; CARRY=$(cd "$2" && pwd); fi

if [ "$GPU" = 1 ]; then
  SHAPE=${SHAPE:-qwen2-vl-2b}; DTYPE=${DTYPE:-bfloat16}; TOKENS=${TOKENS:-128}
  PY=${PYTHON:-python3}
  if ! "$PY" -c 'import mlx_vlm' 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile "$CARRY"/*.whl
  fi
  SP=$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
  export LD_LIBRARY_PATH="$SP/mlx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  BIN="$CARRY/bench_vision"
  MODELS=${MODELS:-/root/bench-models}
  LABEL=gpu-$SHAPE-$DTYPE
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > /tmp/vbench-machine.txt || true
else
  SHAPE=${SHAPE:-qwen2-vl-2b-l4}; DTYPE=${DTYPE:-float32}; TOKENS=${TOKENS:-16}
  PY=${PYTHON:-$(scripts/parity/ensure_vlm_venv.sh)}
  [ -d .cache/fixtures/vision/qwen2-vl ] || scripts/parity/vision_all.sh  # tokenizer + chat template
  cargo build --release -q -p mlx-serving-core --example bench_vision
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_vision
  MODELS=${MODELS:-.cache/fixtures/vbench}
  LABEL=cpu-$SHAPE-$DTYPE
  { grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"; } > /tmp/vbench-machine.txt
fi
ROUNDS=${ROUNDS:-3}; RUNS=${RUNS:-1}
OUT=${OUT:-bench/vision/results/$LABEL}
MODEL="$MODELS/$SHAPE-$DTYPE"
IMAGE="$MODELS/image-1024x768.png"
mkdir -p "$OUT"

TOKDIR=.cache/fixtures/vision/qwen2-vl
[ "$GPU" = 1 ] && TOKDIR="$CARRY/tok"
"$PY" bench/vision/make_random_vlm.py "$MODEL" --shape "$SHAPE" --dtype "$DTYPE" --tokenizer-dir "$TOKDIR"

# mlx-vlm on the CPU gets the BLAS our engine links (OpenBLAS), as the parity references do; the
# official wheel's own BLAS is far slower for f32 GEMM, which would only measure the library.
PRE=
if [ "$GPU" = 0 ] && [ "$(uname -s)" = Linux ] && [ "${MLX_SERVING_BLAS:-}" != none ]; then
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -e "$d/libopenblas.so.0" ]; then PRE="$d/libopenblas.so.0"; break; fi
  done
fi

RAW="$OUT/raw.jsonl"
: > "$RAW"
ours() { "$BIN" "$MODEL" "$IMAGE" "$TOKENS" "$RUNS"; }
theirs() { if [ -n "$PRE" ]; then LD_PRELOAD="$PRE" "$PY" bench/vision/mlx_vlm_bench.py "$MODEL" "$IMAGE" "$TOKENS" "$RUNS"; else "$PY" bench/vision/mlx_vlm_bench.py "$MODEL" "$IMAGE" "$TOKENS" "$RUNS"; fi; }
record() {  # side round json
  printf '{"side":"%s","round":%s,"r":%s}\n' "$1" "$2" "$3" >> "$RAW"
}
[ -f "$IMAGE" ] || "$BIN" --write-image "$IMAGE"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="ours mlx-vlm"; else order="mlx-vlm ours"; fi
  for side in $order; do
    log "round $r/$ROUNDS: $side ($SHAPE $DTYPE, $TOKENS tokens)"
    if [ "$side" = ours ]; then j=$(ours | tail -1); else j=$(theirs | tail -1); fi
    record "$side" "$r" "$j"
  done
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at end" >> /tmp/vbench-machine.txt
cp /tmp/vbench-machine.txt "$OUT/machine.txt"
"$PY" bench/vision/summarize.py "$OUT" --shape "$SHAPE" --dtype "$DTYPE" --tokens "$TOKENS" --gpu "$GPU"
