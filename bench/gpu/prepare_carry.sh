#!/usr/bin/env bash
# Builds here (no GPU needed) what a GPU session carries to the lent machine, in git-ignored
# folders, each call's carry under the 64 MiB limit:
#   call 1: .gpu1/part.aa (first part of the mlx-cuda-13 wheel) + .gv2/ (speculative, rows_matmul_bench)
#   call 2: .gpu1/part.ab (the rest) + .gpus/ (bench_engine, x/cuda_kernels_check, whl/ with the
#           mlx and mlx-lm wheels, tok/ with the default model's tokenizer)
# Call 1's command: mkdir -p /root/w/x && cp .gpu1/part.aa .gv2/speculative /root/w/ && cp .gv2/rows_matmul_bench /root/w/x/
# Call 2's command, within ~30 s: OUT=$OUT LIMIT=<seconds> bash bench/gpu/session_ab.sh
# Needs scripts/setup.sh to have run (the tokenizer comes from .cache/models).
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in .gpu1 .gv2 .gpus; do grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude; done
mkdir -p .gpu1 .gv2 .gpus/x .gpus/whl .gpus/tok /tmp/gpu-whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  -d /tmp/gpu-whl mlx-cuda-13==0.32.2 mlx==0.32.2 mlx-lm==0.32.2
(cd .gpu1 && rm -f part.* && split -b 46000000 /tmp/gpu-whl/mlx_cuda_13-0.32.2-*.whl part.)
cp /tmp/gpu-whl/mlx-0.32.2-*.whl /tmp/gpu-whl/mlx_lm-0.32.2-*.whl .gpus/whl/
cp .cache/models/SmolLM2-135M-Instruct/tokenizer.json .cache/models/SmolLM2-135M-Instruct/tokenizer_config.json .gpus/tok/
cargo build --release -p mlx-serving-core --example bench_engine --example cuda_kernels_check --example speculative --example rows_matmul_bench
strip -o .gpus/bench_engine target/release/examples/bench_engine
strip -o .gpus/x/cuda_kernels_check target/release/examples/cuda_kernels_check
strip -o .gv2/speculative target/release/examples/speculative
strip -o .gv2/rows_matmul_bench target/release/examples/rows_matmul_bench
du -sh .gpu1/part.aa .gpu1/part.ab .gv2 .gpus
