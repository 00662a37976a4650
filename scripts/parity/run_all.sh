#!/usr/bin/env bash
# Build everything the parity tests need and the mlx-lm reference outputs:
#   .venv (mlx 0.32.2 + mlx-lm 0.32.2), .cache/models/SmolLM2-135M-Instruct and gemma-3-270m (f32),
#   .cache/fixtures/<fixture>/ (tiny random-weight models), .cache/parity/<name>.{safetensors,json}.
# Idempotent: a reference output is recomputed only if it is missing or older than its model's
# stamp file or than reference.py. `--force` recomputes all reference outputs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[mlx-serving] $*" >&2; }
FORCE=0; [ "${1:-}" = "--force" ] && FORCE=1

PY=$(scripts/models/ensure_venv.sh)
scripts/models/fetch_default_model.sh >/dev/null
scripts/models/fetch_gemma3.sh >/dev/null
"$PY" scripts/models/make_fixtures.py

# name=model_dir:stamp (paths relative to the repo root)
MODELS=(
  "SmolLM2-135M-Instruct=.cache/models/SmolLM2-135M-Instruct:.cache/models/SmolLM2-135M-Instruct/.complete"
  "gemma-3-270m=.cache/models/gemma-3-270m:.cache/models/gemma-3-270m/.complete"
)
for f in llama mistral qwen2 qwen3 gemma3 llama-4bit; do
  MODELS+=("$f=.cache/fixtures/$f:.cache/fixtures/.stamp")
done

todo=()
for m in "${MODELS[@]}"; do
  name=${m%%=*}; rest=${m#*=}; dir=${rest%%:*}; stamp=${rest#*:}
  st=.cache/parity/$name.safetensors; js=.cache/parity/$name.json
  if [ "$FORCE" = 0 ] && [ -f "$st" ] && [ -f "$js" ] && [ "$st" -nt "$stamp" ] \
     && [ "$st" -nt scripts/parity/reference.py ] && [ "$js" -nt "$stamp" ]; then
    continue
  fi
  todo+=("$name=$dir")
done

if [ ${#todo[@]} -eq 0 ]; then
  log "parity references up to date (.cache/parity)"
  exit 0
fi
log "computing mlx-lm reference outputs: ${todo[*]%%=*}"
"$PY" scripts/parity/reference.py "${todo[@]}"
log "parity references ready (.cache/parity)"
