#!/usr/bin/env bash
# llama.cpp's test material (MIT), from the llama-cpp-python sdist on PyPI (it vendors llama.cpp):
#   .cache/fixtures/llama-cpp/templates/*.jinja      real chat templates of released models
#   .cache/fixtures/llama-cpp/vocab/ggml-vocab-*.gguf vocab-only GGUFs, with .inp/.out golden
#                                                     tokenization vectors (test-tokenizer-0)
# `pip download` cannot fetch this sdist without building its metadata (cmake), so the tarball's
# address is read from the package index pip uses (PEP 691 JSON), and its sha256 is pinned here.
# Idempotent (stamp file written last). Prints the folder on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$ROOT/.cache/fixtures/llama-cpp"
DL="$ROOT/.cache/downloads"
NAME=llama_cpp_python-0.3.36
SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
STAMP_CONTENT="llama-cpp-python==0.3.36 sha256=$SHA"
log() { echo "[mlx-serving] $*" >&2; }

if [ -f "$OUT/.complete" ] && [ "$(cat "$OUT/.complete")" = "$STAMP_CONTENT" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$DL"
TGZ="$DL/$NAME.tar.gz"
sha_ok() { [ -f "$TGZ" ] && echo "$SHA  $TGZ" | sha256sum -c --status; }
if ! sha_ok; then
  log "downloading $NAME.tar.gz (76 MB)"
  python3 - "$NAME.tar.gz" "$TGZ.part" <<'PYEOF'
import json, os, shutil, subprocess, sys, urllib.request
fname, out = sys.argv[1], sys.argv[2]
index = os.environ.get("PIP_INDEX_URL")
if not index:
    r = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True)
    index = r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "https://pypi.org/simple"
req = urllib.request.Request(index.rstrip("/") + "/llama-cpp-python/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=120))["files"]
url = next(f["url"] for f in files if f["filename"] == fname)
with urllib.request.urlopen(url, timeout=600) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
  mv "$TGZ.part" "$TGZ"
  sha_ok || { log "ERROR: sha256 mismatch for $TGZ"; rm -f "$TGZ"; exit 1; }
fi
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
tar xzf "$TGZ" -C "$OUT.tmp" "$NAME/vendor/llama.cpp/models" "$NAME/vendor/llama.cpp/LICENSE"
M="$OUT.tmp/$NAME/vendor/llama.cpp/models"
mv "$M/templates" "$OUT.tmp/templates"
mkdir -p "$OUT.tmp/vocab" && mv "$M"/ggml-vocab-* "$OUT.tmp/vocab/"
mv "$OUT.tmp/$NAME/vendor/llama.cpp/LICENSE" "$OUT.tmp/LICENSE"
rm -rf "$OUT.tmp/$NAME" "$OUT"
mv "$OUT.tmp" "$OUT"
printf '%s' "$STAMP_CONTENT" > "$OUT/.complete"
echo "$OUT"
