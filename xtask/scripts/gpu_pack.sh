#!/usr/bin/env bash
# Packs a real-GPU measurement for the `device` tool's machine, which has no Rust toolchain: builds
# the step benches and the GPU tests here (the same features as CI, so nothing of burn rebuilds),
# strips and xz-packs them into gpu-bin/ (ignored), with the Vulkan loader's Debian packages in
# case that machine lacks them. What it packs must stay under `run`'s 64 MiB carry limit (about
# 52 MiB plus the 7.5 MB working tree, 62 MB of 67). Then, on the device, one call:
#   run(command = "bash xtask/scripts/gpu_run.sh", carry = ["gpu-bin"], timeout_s = 540)
# and its logs and JSON come back under $OUT (see gpu_run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/burn-qat-target}"
if [ "$PWD" != /work/main ]; then
  # The benches find the embedded data through their compile-time manifest path; gpu_run.sh
  # links /work/main to the copy it runs in, so build where that path is right.
  echo "gpu_pack.sh: build from /work/main (the binaries read data below their build path)" >&2
  exit 1
fi
rm -rf gpu-bin && mkdir -p gpu-bin/gl
cargo build --workspace --tests --examples --features quant/wgpu --message-format=json \
  >gpu-bin/build.json
python3 - <<'PY'
import json, os, shutil, subprocess
# ("lib", "quant"): the quant crate's unit tests (the rows kernels against picked rows, the
# learned scale's parts, the range's zero point), the one executable its lib target builds.
wanted = {("test", "gpu_launches"), ("test", "fused_kernels"), ("lib", "quant"),
          ("example", "bench_qat_step"), ("example", "bench_bert_step")}
found = {}
for line in open("gpu-bin/build.json"):
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    target = msg["target"]
    key = (target["kind"][0], target["name"])
    if key in wanted:
        found[key[1]] = msg["executable"]
missing = sorted(name for _, name in wanted if name not in found)
if missing:
    raise SystemExit(f"gpu_pack.sh: cargo built no binary for {missing}")
for name, path in sorted(found.items()):
    tmp = f"gpu-bin/{name}"
    shutil.copy(path, tmp)
    subprocess.run(["strip", tmp], check=True)
    subprocess.run(["xz", "-9", "-T2", "-f", tmp], check=True)
    print(f"{name}: {os.path.getsize(tmp + '.xz') / 2**20:.1f} MiB packed")
PY
rm gpu-bin/build.json
# The Vulkan / EGL loaders (the device README's list), unpacked there only when it has none.
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update -qq && (cd gpu-bin/gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0)
# MiniLM-L6's shape for the step bench (`--random-weights`): its config.json, not its 90 MB weights.
[ -f models/minilm/config.json ] || cargo xtask fetch minilm
mkdir -p gpu-bin/minilm-l6 && cp models/minilm/config.json gpu-bin/minilm-l6/
git log -1 --format='%h %s' >gpu-bin/commit.txt
du -sh gpu-bin
