#!/usr/bin/env bash
# Build everything the parity tests need and the mlx-lm reference outputs:
#   .venv (mlx 0.32.2 + mlx-lm 0.32.2), .cache/models/SmolLM2-135M-Instruct and gemma-3-270m (f32),
#   .cache/fixtures/<fixture>/ (tiny random-weight models), .cache/parity/<name>.{safetensors,json}.
# Idempotent: a reference output is recomputed only if it is missing or older than its model's
# stamp file or than reference.py, or was computed under another BLAS. `--force` recomputes all.
# The reference runs under the BLAS the engine links (Debian's OpenBLAS when installed, via
# LD_PRELOAD for this test process only), since summation order changes the last bits.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[mlx-serving] $*" >&2; }
FORCE=0; [ "${1:-}" = "--force" ] && FORCE=1

PY=$(scripts/models/ensure_venv.sh)
scripts/models/fetch_default_model.sh >/dev/null
scripts/models/fetch_gemma3.sh >/dev/null
"$PY" scripts/models/make_fixtures.py
# Vision (issue #9): mlx-vlm reference venv, tiny Qwen2-VL fixture, test images, references.
scripts/parity/vision_all.sh
"$PY" scripts/models/make_arch_fixtures.py

# llama.cpp's chat templates and tokenizer vectors, and the references rendered/decoded by
# transformers and the gguf package (each recomputed when missing or older than its script).
LCPP=$(scripts/models/fetch_llama_cpp_models.sh)
stale() { [ ! -f "$1" ] || [ "$2" -nt "$1" ] || [ "$LCPP/.complete" -nt "$1" ]; }
if stale "$LCPP/chat_templates.json" scripts/parity/chat_templates.py; then
  "$PY" scripts/parity/chat_templates.py "$LCPP/templates" "$LCPP/chat_templates.json"
fi
GQ=.cache/fixtures/gguf-quants/reference.safetensors
if stale "$GQ" scripts/parity/gguf_quants.py; then
  mkdir -p "$(dirname "$GQ")"
  "$PY" scripts/parity/gguf_quants.py "$GQ" gemma3=.cache/downloads/gemma3-270m/gemma-3-270m-q4_k_m.gguf \
    smollm2=.cache/downloads/SmolLM2-135M-Instruct.Q4_1.gguf
fi

# The BLAS the engine links (crates/core/build_blas.rs looks in the same places).
OPENBLAS=
if [ "$(uname -s)" = Linux ] && [ "${MLX_SERVING_BLAS:-}" != none ]; then
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /lib/x86_64-linux-gnu /lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -e "$d/libopenblas.so.0" ]; then OPENBLAS="$d/libopenblas.so.0"; break; fi
  done
fi
WANT_BLAS=reference; [ -n "$OPENBLAS" ] && WANT_BLAS=openblas

# name=model_dir:stamp (paths relative to the repo root)
MODELS=(
  "SmolLM2-135M-Instruct=.cache/models/SmolLM2-135M-Instruct:.cache/models/SmolLM2-135M-Instruct/.complete"
  "gemma-3-270m=.cache/models/gemma-3-270m:.cache/models/gemma-3-270m/.complete"
)
for f in llama mistral qwen2 qwen3 gemma3 llama-4bit; do
  MODELS+=("$f=.cache/fixtures/$f:.cache/fixtures/.stamp")
done
for f in phi3 qwen3_moe qwen3_moe-4bit mixtral; do
  MODELS+=("$f=.cache/fixtures/$f:.cache/fixtures/.stamp-arch")
done

todo=()
for m in "${MODELS[@]}"; do
  name=${m%%=*}; rest=${m#*=}; dir=${rest%%:*}; stamp=${rest#*:}
  st=.cache/parity/$name.safetensors; js=.cache/parity/$name.json
  if [ "$FORCE" = 0 ] && [ -f "$st" ] && [ -f "$js" ] && [ "$st" -nt "$stamp" ] \
     && [ "$st" -nt scripts/parity/reference.py ] && [ "$js" -nt "$stamp" ] \
     && grep -q "\"blas\": \"$WANT_BLAS" "$js"; then
    continue
  fi
  todo+=("$name=$dir")
done

if [ ${#todo[@]} -eq 0 ]; then
  log "parity references up to date (.cache/parity)"
  exit 0
fi
log "computing mlx-lm reference outputs (BLAS: $WANT_BLAS): ${todo[*]%%=*}"
if [ -n "$OPENBLAS" ]; then
  LD_PRELOAD="$OPENBLAS${LD_PRELOAD:+:$LD_PRELOAD}" "$PY" scripts/parity/reference.py "${todo[@]}"
else
  "$PY" scripts/parity/reference.py "${todo[@]}"
fi
log "parity references ready (.cache/parity)"

# Speculative-decoding fixtures (tiny-vocabulary target/draft pairs; fast, idempotent).
"$PY" scripts/spec/make_spec_fixtures.py >/dev/null
log "speculative fixtures ready (.cache-spec)"
