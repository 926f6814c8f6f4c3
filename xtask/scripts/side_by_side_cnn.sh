#!/bin/bash
# The engine's CNN deployment benchmark and ONNX Runtime's on the same exported W8A8 programs
# (ONNX QDQ, written by `bench_deploy --onnx`, with uint8 weights and with int8 weights:
# ONNX Runtime picks different kernels for each), alternately, three times each on this
# machine: the numbers of README's "ONNX export" table. Needs `pip install onnxruntime numpy`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p trainer --example bench_deploy
bin="${CARGO_TARGET_DIR:-target}/debug/examples/bench_deploy"
dir="${TMPDIR:-/tmp}/cnn-onnx"
for i in 1 2 3; do
  for model in lenet resnet; do
    "$bin" --model "$model" --rounds 5 --gemm no --onnx "$dir/uint8" | grep -E "^\| (lenet|resnet20) \|"
    "$bin" --model "$model" --rounds 1 --gemm no --float no --onnx "$dir/int8" --onnx-weights int8 > /dev/null
  done
  for weights in uint8 int8; do
    python3 xtask/scripts/ort_cnn_bench.py "$dir/$weights" 5 2 | sed "s/ int8 |/ int8, $weights weights |/"
  done
done
