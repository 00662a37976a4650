#!/usr/bin/env bash
# Benchmark model folders made from the default model (.cache/models/SmolLM2-135M-Instruct, f32):
#   .cache/models/SmolLM2-135M-Instruct-f16    the same weights stored as float16 (as shipped on the hub)
#   .cache/models/SmolLM2-135M-Instruct-4bit   mlx_lm.convert of the f16 folder: affine 4 bits,
#                                              group 64, float16 scales/biases (mlx-lm's defaults)
# Idempotent (each folder's .complete stamp is written last). Prints nothing on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
log() { echo "[mlx-serving] $*" >&2; }
PY=$(scripts/models/ensure_venv.sh)
SRC=$(scripts/models/fetch_default_model.sh)
F16="$ROOT/.cache/models/SmolLM2-135M-Instruct-f16"
Q4="$ROOT/.cache/models/SmolLM2-135M-Instruct-4bit"
STAMP="from=$(cat "$SRC/.complete") v1"

if [ "$(cat "$F16/.complete" 2>/dev/null)" != "$STAMP" ]; then
  log "making $F16 (float16 copy)"
  rm -rf "$F16" "$F16.tmp"; mkdir -p "$F16.tmp"
  "$PY" - "$SRC" "$F16.tmp" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
import mlx.core as mx
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors" and f.name != ".complete":
        shutil.copyfile(f, dst / f.name)
w = mx.load(str(src / "model.safetensors"))
mx.save_safetensors(str(dst / "model.safetensors"), {k: v.astype(mx.float16) for k, v in w.items()},
                    metadata={"format": "mlx"})
cfg = json.loads((dst / "config.json").read_text())
cfg["torch_dtype"] = "float16"
(dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
PYEOF
  printf '%s' "$STAMP" > "$F16.tmp/.complete"; mv "$F16.tmp" "$F16"
fi

if [ "$(cat "$Q4/.complete" 2>/dev/null)" != "$STAMP" ]; then
  log "making $Q4 (mlx_lm.convert -q, 4 bits, group 64, f16 scales)"
  rm -rf "$Q4" "$Q4.tmp"
  "$PY" -m mlx_lm convert --hf-path "$F16" --mlx-path "$Q4.tmp" -q --q-bits 4 --q-group-size 64 >&2
  for f in tokenizer.json tokenizer_config.json generation_config.json; do cp "$F16/$f" "$Q4.tmp/$f"; done
  printf '%s' "$STAMP" > "$Q4.tmp/.complete"; mv "$Q4.tmp" "$Q4"
fi
log "bench models ready: $F16 $Q4"
