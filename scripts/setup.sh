#!/usr/bin/env bash
# One set-up for `npm start` and `npm test`: system packages, npm deps, the MLX runtime inside the
# package, the native build and the default model (plus, with --test, the test virtualenv,
# fixtures and mlx-lm reference outputs). Idempotent: a second run with nothing changed
# downloads and rebuilds nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-run}
log() { echo "[mlx-serving] $*" >&2; }

# --- 1. system packages -----------------------------------------------------------------
need_pkgs=()
command -v g++ >/dev/null || need_pkgs+=(g++)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-pip)
# bindgen (building our mlx-sys) needs libclang
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* /usr/lib/aarch64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need_pkgs+=(libclang-dev)
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_pkgs+=(python3-venv); fi
# MLX's CPU backend calls cblas_sgemm: the build links Debian's multithreaded OpenBLAS ahead of the
# wheel's reference BLAS (crates/core/build_blas.rs; DESIGN.md decision 8). Without it everything
# still works, ~10-40x slower on CPU, and getRuntimeInfo().backend.blas says so.
if [ "$(uname -s)" = Linux ] && ! ls /usr/lib/*-linux-gnu/libopenblas.so.0 /usr/lib64/libopenblas.so.0 /usr/lib/libopenblas.so.0 >/dev/null 2>&1; then
  need_pkgs+=(libopenblas0-pthread)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${need_pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then
    log "installing system packages: ${need_pkgs[*]}"; bash -c "$cmd" >&2
  elif command -v sudo >/dev/null; then
    log "installing system packages with sudo: ${need_pkgs[*]}"; sudo bash -c "$cmd" >&2
  else
    log "missing system packages: ${need_pkgs[*]}. Run as root:"; echo "  $cmd" >&2; exit 1
  fi
fi
command -v cargo >/dev/null || { log "Rust (cargo) is required: install it with rustup, then rerun"; exit 1; }

# --- 2. npm dependencies ------------------------------------------------------------------
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"; npm ci --no-audit --no-fund >&2
fi

# --- 3. MLX runtime (official wheel, inside the package) ----------------------------------
MLX_VERSION=0.32.2
BACKEND=${MLX_SERVING_BACKEND:-}
if [ -z "$BACKEND" ]; then
  if [ "$(uname -s)" = Darwin ]; then BACKEND=metal
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then BACKEND=cuda
  else BACKEND=cpu; fi
fi
case "$BACKEND" in
  cpu) WHEEL="mlx-cpu==$MLX_VERSION"; DEPS=--no-deps ;;
  cuda) WHEEL="mlx-cuda-13==$MLX_VERSION"; DEPS= ;;
  metal) WHEEL="mlx-metal==$MLX_VERSION"; DEPS=--no-deps ;;
  *) log "MLX_SERVING_BACKEND must be cpu, cuda or metal (got '$BACKEND')"; exit 1 ;;
esac
if [ "$(cat mlx-runtime/.installed 2>/dev/null)" != "$WHEEL" ]; then
  log "installing MLX runtime $WHEEL into mlx-runtime/"
  rm -rf mlx-runtime
  python3 -m pip install -q --disable-pip-version-check $DEPS --target mlx-runtime "$WHEEL" >&2
  echo "$WHEEL" > mlx-runtime/.installed
fi

# --- 4. native build (cargo is incremental: a no-op when nothing changed) --------------------
log "building the native addon (first build takes a few minutes)"
npx napi build --platform --release --js native.cjs --dts native.d.ts >&2

# --- 5. default model -----------------------------------------------------------------------
bash scripts/models/fetch_default_model.sh

# --- 6. test prerequisites --------------------------------------------------------------------
if [ "$MODE" = "--test" ]; then
  bash scripts/parity/run_all.sh
fi
log "set-up complete"
