#!/usr/bin/env bash
# All tests: Rust unit tests + parity against mlx-lm (cargo), then the JS contract suite (vitest).
# Expects scripts/setup.sh --test to have run (npm test does both).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
echo "[mlx-serving] cargo tests (core + parity)" >&2
# Tests build in their own target dir: test-only dependencies change feature sets of shared
# crates, and one shared dir would make `npm run build` and the tests rebuild each other.
CARGO_TARGET_DIR="$ROOT/target/tests" cargo test --release -p mlx-serving-core --no-fail-fast 2>&1
echo "[mlx-serving] vitest contract suite" >&2
npx vitest run 2>&1
