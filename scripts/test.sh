#!/usr/bin/env bash
# All tests: Rust unit tests + parity against mlx-lm (cargo), then the JS contract suite (vitest).
# Expects scripts/setup.sh --test to have run (npm test does both).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "[mlx-serving] cargo tests (core + parity)" >&2
cargo test --release -p mlx-serving-core 2>&1
echo "[mlx-serving] vitest contract suite" >&2
npx vitest run 2>&1
