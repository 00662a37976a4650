#!/usr/bin/env bash
# Speculative-decoding benchmark on the lent NVIDIA machine: target = the random-weight
# Llama-3.2-1B-shaped model with its layers from KEEP on damped, drafts = its first N layers
# (make_spec_pair.py says why), ours (bench/speculative.rs binary) and mlx-lm's speculative
# generation side by side on the same card, same prompts, greedy, EOS ignored.
# usage (repo root, after bench/gpu/run.sh installed MLX and made the models):
#   [KEEP=4] [DRAFTS=4,8] [KS="4 6"] [RUNS=3] [SKIP_MLX_LM=1] bash bench/gpu/run_spec.sh <carry_dir> <out_dir> [alpha ...]
# KEEP: target layers left undamped (the draft depths worth measuring are around it).
set -euo pipefail
CARRY=$1; OUT=$2; shift 2
ALPHAS=${*:-0.3}
PY=${PYTHON:-python3}
SP=$($PY -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
export LD_LIBRARY_PATH="$SP/mlx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
MODELS=/root/bench-models
SRC=$MODELS/llama-3.2-1b-shaped
KS=${KS:-${K:-4}}; TOKENS=${TOKENS:-128}; RUNS=${RUNS:-3}; DRAFTS=${DRAFTS:-4,8}; KEEP=${KEEP:-4}
for a in $ALPHAS; do
  $PY bench/gpu/make_spec_pair.py "$SRC" "$MODELS/spec" --alpha "$a" --keep "$KEEP" --drafts "$DRAFTS" 2>&1 | tail -1
  args=(--target "$MODELS/spec/target-a$a")
  for n in ${DRAFTS//,/ }; do args+=(--draft "$MODELS/spec/draft-a$a-L$n"); done
  for k in $KS; do args+=(--k "$k"); done
  echo "== alpha $a ours" | tee -a "$OUT/spec.md"
  "$CARRY/speculative" "${args[@]}" --tokens "$TOKENS" --runs "$RUNS" --out /root/spec-views \
    --json "$OUT/spec-ours-a$a${TAG:-}.json" 2>&1 | tee -a "$OUT/spec.md" | tail -12 || echo "ours failed (alpha $a)"
  [ -n "${SKIP_MLX_LM:-}" ] && continue  # an A/B of our own builds on the same pair
  echo "== alpha $a mlx-lm" | tee -a "$OUT/spec.md"
  $PY bench/speculative_mlx_lm.py "${args[@]}" --tokens "$TOKENS" --runs "$RUNS" 2>&1 | tee -a "$OUT/spec.md" | tail -12 || echo "mlx-lm failed (alpha $a)"
done
