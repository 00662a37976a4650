#!/usr/bin/env bash
# Create the vision reference virtualenv <repo>/.venv-vlm with mlx-vlm (the reference for the
# vision-language models, as mlx-lm is for text). Separate from .venv because mlx-vlm pulls a
# large dependency tree (torch-free here): mlx-vlm itself is installed with --no-deps and only
# the packages its image/Qwen-VL/LLaVA code paths import are added, with MLX pinned to the
# version the engine builds against (constraints file). Idempotent: a stamp file records the
# requirement string; a re-run with the same requirements only re-checks the imports.
#
# Usage: scripts/parity/ensure_vlm_venv.sh   (prints the venv python path on stdout when done)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/.venv-vlm"
PY="$VENV/bin/python"
MLX_VERSION=0.32.2
VLM_VERSION=0.7.6   # the newest mlx-vlm that accepts MLX 0.32.2
# What mlx_vlm's load/processor/generate path imports (its heavy extras such as opencv,
# mlx-audio, fastapi, torch are never imported on that path).
DEPS=("mlx[cpu]==$MLX_VERSION" "mlx-lm==$MLX_VERSION" "transformers>=5.14.0" "jinja2>=3.1.0"
      "sentencepiece>=0.2.0" "tqdm>=4.66.2" "Pillow>=10.3.0" "requests>=2.31.0" "numpy"
      "safetensors" "huggingface_hub")
STAMP="$VENV/.mlx-serving-requirements"
log() { echo "[mlx-serving] $*" >&2; }

if [ ! -x "$PY" ]; then
  log "creating virtualenv $VENV"
  python3 -m venv "$VENV" || { rm -rf "$VENV"; log "ERROR: 'python3 -m venv' failed (install python3-venv)"; exit 1; }
fi

want="mlx-vlm==$VLM_VERSION ${DEPS[*]}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  log "installing into .venv-vlm: $want"
  rm -f "$STAMP"
  cons=$(mktemp); trap 'rm -f "$cons"' EXIT
  printf 'mlx==%s\nmlx-cpu==%s\nmlx-lm==%s\n' "$MLX_VERSION" "$MLX_VERSION" "$MLX_VERSION" > "$cons"
  "$PY" -m pip install --disable-pip-version-check -c "$cons" "${DEPS[@]}" >&2
  "$PY" -m pip install --disable-pip-version-check --no-deps "mlx-vlm==$VLM_VERSION" >&2
  need_stamp=1
else
  need_stamp=0
fi

if ! "$PY" - "$MLX_VERSION" <<'PYEOF' >&2
import sys
import mlx.core as mx
import mlx_vlm  # noqa: F401
from mlx_vlm.models.qwen2_vl import qwen2_vl  # noqa: F401
from mlx_vlm.models.qwen2_vl import processing_qwen2_vl  # noqa: F401
if mx.__version__ != sys.argv[1]:
    sys.exit(f"mlx.core.__version__ is {mx.__version__}, expected {sys.argv[1]}")
PYEOF
then
  rm -f "$STAMP"
  log "ERROR: .venv-vlm import check failed (see above); delete .venv-vlm and re-run"
  exit 1
fi
if [ "$need_stamp" = 1 ]; then
  printf '%s' "$want" > "$STAMP"
  log "vlm venv ready (mlx $MLX_VERSION, mlx-vlm $VLM_VERSION)"
fi
echo "$PY"
