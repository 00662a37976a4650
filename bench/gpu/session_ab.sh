#!/usr/bin/env bash
# One GPU call after bench/gpu/prepare_carry.sh's call 1 (LIMIT = seconds this call may use):
# installs the carried wheels, makes the 1B-shaped random model, then runs, each while time is
# left: the speculative A/Bs (SPECS: range attention kernel off/on × draft hand-off, k = 6,
# 2-layer draft), the range attention check + timing, with MLXLM_SPEC=1 the default build's
# speculative run beside mlx-lm's, and a 1B pair ours vs mlx-lm (decode, prefill, TTFT, 16
# streams, RSS). Results and traces under $OUT, packed into one all.tgz at the end (the device
# tool brings back only a few files).
set -uo pipefail
T0=$(date +%s); LIMIT=${LIMIT:-580}
el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
left() { [ $(( $(date +%s) - T0 + $1 )) -lt $LIMIT ]; }   # $1: seconds the next step needs
remaining() { echo $(( LIMIT - $(date +%s) + T0 - 5 )); }   # a timeout that ends before LIMIT
W=/root/w; mkdir -p $W/x
PY=python3
if ! $PY -c 'import mlx.core' 2>/dev/null; then
  cat $W/part.aa .gpu1/part.ab > $W/mlx_cuda_13-0.32.2-py3-none-manylinux_2_35_x86_64.whl
  $PY -m pip install -q --no-index --no-deps --no-compile .gpus/whl/*.whl $W/mlx_cuda_13-0.32.2-py3-none-manylinux_2_35_x86_64.whl 2>&1 | tail -3
fi
cp -r .gpus/tok .gpus/bench_engine $W/; cp .gpus/x/* $W/x/; chmod +x $W/bench_engine $W/speculative $W/x/*
$PY -c 'import mlx.core as mx; print("mlx", mx.__version__, mx.default_device())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
SP=$($PY -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
export LD_LIBRARY_PATH="$SP/mlx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BENCH_GPU_NO_4BIT=1 BENCH_GPU_ONLY=llama-3.2-1b-shaped $PY bench/gpu/make_random_models.py $W/tok /root/bench-models 2>&1 | tail -1
$PY bench/gpu/make_prompts.py > /tmp/prompts.json
el setup done
export BENCH_DECODE_REPEAT=5 MLX_SERVING_STEP_TRACE=1
ours() { local label=$1 m=$2; shift 2
  env "$@" timeout 100 /root/w/bench_engine /root/bench-models/$m /tmp/prompts.json 128 16 2> $OUT/trace-$label-$R.txt | tail -1 | sed "s/^/{\"model\":\"$m\",\"side\":\"$label\",\"run\":$R,\"r\":/; s/\$/}/" >> $OUT/ab.jsonl; el "$label $m"; }
mlxlm() { local m=$1
  timeout 100 python3 bench/mlx_lm_bench.py /root/bench-models/$m /tmp/prompts.json 128 16 2>/dev/null | tail -1 | sed "s/^/{\"model\":\"$m\",\"side\":\"mlx-lm\",\"run\":$R,\"r\":/; s/\$/}/" >> $OUT/ab.jsonl; el "mlx-lm $m"; }
# the α = 0.01 pair, 2-layer draft, k = 6, 2 runs (run_spec.sh), variables in "$@"
run_spec() { env "$@" KEEP=2 DRAFTS=2 KS=6 RUNS=2 timeout $(remaining) bash bench/gpu/run_spec.sh /root/w $OUT 0.01; }
spec() { local att=$1 every=$2
  left 70 || return
  run_spec TAG=-att$att-e$every SKIP_MLX_LM=1 MLX_SERVING_ATTENTION_KERNEL=$att MLX_SERVING_DRAFT_ASYNC_EVERY=$every > $OUT/spec-att$att-e$every.txt 2>&1
  el "spec att=$att draft_async_every=$every"; grep -i "tok/s\|accept\|round-trace\|step-trace\|×\|speed" $OUT/spec-att$att-e$every.txt | head -16; }
m=llama-3.2-1b-shaped
# MLXLM_SPEC=1: the default build's speculative run beside mlx-lm's on the same pair
if [ -n "${MLXLM_SPEC:-}" ] && left 90; then
  run_spec TAG=-default-vs-mlxlm > $OUT/spec-vs-mlxlm.txt 2>&1
  el "spec vs mlx-lm"; grep "|\|==" $OUT/spec-vs-mlxlm.txt | head -20
fi
# SPECS: "att:every" pairs, in order (MLX_SERVING_ATTENTION_KERNEL, MLX_SERVING_DRAFT_ASYNC_EVERY)
for p in ${SPECS:-0:1 0:0 1:1 1:0}; do spec ${p%%:*} ${p##*:}; done
left 30 && { KERNELS_CHECK_ONLY=range_attention timeout $(remaining) /root/w/x/cuda_kernels_check > $OUT/kernels.txt 2>&1; echo "kernels rc=$?"; grep -c FAIL $OUT/kernels.txt; grep "timing\|failures" $OUT/kernels.txt; }
R=1; left 60 && ours default $m X=0; left 40 && mlxlm $m
python3 - $OUT/ab.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    try: d = json.loads(l)
    except Exception: continue
    r = d["r"]; a = r.get("aggregate_tps", {})
    print(d["model"][:8], d["side"].ljust(10), d["run"], "dec", round(r.get("decode_tps", 0), 1), [round(x) for x in r.get("decode_tps_runs", [])], "pre", round(r.get("prefill_tps", 0)), "ttft", r.get("ttft_chat_s"), "agg16", a.get("16", a), "ids", r.get("solo_ids_head", [])[:8])
PY
for f in $OUT/trace-*; do echo "$f: $(grep 'stacked=0 other=1 ' $f)"; done
el end
(cd $OUT && tar czf /tmp/all.tgz . && rm -rf $OUT/* && mv /tmp/all.tgz $OUT/)
