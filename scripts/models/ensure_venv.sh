#!/usr/bin/env bash
# Create the test/reference virtualenv at <repo>/.venv with mlx-lm (the reference implementation,
# DESIGN.md decision 6) and the GGUF conversion tools. Idempotent: a stamp file inside .venv records
# the requirement string; a re-run with the same requirements only re-checks the imports.
#
# Usage: scripts/models/ensure_venv.sh        (prints the venv python path on stdout when done)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
# NOT mlx-lm[cpu]: that extra pulls MLX 0.32.4, which mlx-c 0.7.0 cannot build against.
# transformers (a dependency of mlx-lm anyway) renders the chat-template references.
REQS=("mlx[cpu]==0.32.2" "mlx-lm==0.32.2" "gguf" "numpy" "safetensors" "transformers")
MLX_VERSION=0.32.2
STAMP="$VENV/.mlx-serving-requirements"
log() { echo "[mlx-serving] $*" >&2; }

if [ ! -x "$PY" ]; then
  log "creating virtualenv $VENV"
  if ! python3 -m venv "$VENV"; then
    rm -rf "$VENV"
    log "ERROR: 'python3 -m venv' failed (venv/ensurepip missing)."
    log "On Debian/Ubuntu install it with:  sudo apt-get install -y python3-venv"
    exit 1
  fi
fi

want="${REQS[*]}"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  log "installing into .venv: $want"
  rm -f "$STAMP"
  "$PY" -m pip install --disable-pip-version-check "${REQS[@]}" >&2
  need_stamp=1
else
  need_stamp=0
fi

if ! "$PY" - "$MLX_VERSION" <<'PYEOF' >&2
import sys
import mlx.core as mx
import mlx_lm, gguf, numpy, safetensors, transformers  # noqa: F401
want = sys.argv[1]
if mx.__version__ != want:
    sys.exit(f"mlx.core.__version__ is {mx.__version__}, expected {want}")
PYEOF
then
  rm -f "$STAMP"
  log "ERROR: .venv import check failed (see above); delete .venv and re-run"
  exit 1
fi

if [ "$need_stamp" = 1 ]; then
  printf '%s' "$want" > "$STAMP"
  log "venv ready (mlx $MLX_VERSION)"
fi
echo "$PY"
