#!/bin/bash
# The engine's MiniLM benchmark and ONNX Runtime's (../shared/peers/ort_minilm.py), alternately,
# three times each on this machine: the numbers of README's "Against ONNX Runtime" table.
# Needs `cargo xtask fetch minilm` and `pip install torch transformers onnx onnxruntime`.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p trainer --example bench_deploy
bin="${CARGO_TARGET_DIR:-target}/debug/examples/bench_deploy"
peer="${PEERS:-../shared/peers}/ort_minilm.py"
for i in 1 2 3; do
  "$bin" --model minilm --rounds 5 --gemm no | grep 'minilm |'
  python3 "$peer" models/minilm "${TMPDIR:-/tmp}/ort-minilm" 2>/dev/null | grep -E '^(f32|int8) '
done
