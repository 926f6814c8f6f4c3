#!/usr/bin/env bash
# Runs on the `device` tool's GPU machine what gpu_pack.sh packed (see there): the launch-budget
# test, the kernels-vs-composite test and the quant crate's unit tests on the real GPU, then the
# step benches at the sizes the GPU issue's targets name (LeNet-BN batch 512; MiniLM-L6's shape
# at 32 × 128, random weights), and as time allows the same steps at their smallest shapes (the
# launch-bound floor), the MiniLM step with exclusive memory pages, both steps' kernel times by
# kernel (*_profiled.txt) and the MiniLM step under burn-fusion's beam width 3.
# Logs, the benches' JSON lines, the device's name and the targets beside the measured ratios
# (targets.md) go to $OUT (or /tmp/gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/gpu-out}"
mkdir -p "$out"
# The benches read data below the path they were built at (/work/main).
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
if ! ldconfig -p | grep -q libvulkan; then
  for f in gpu-bin/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
# Headless NVIDIA: the stock ICD names libGLX_nvidia, which finds no display; EGL's works.
# Without nvidia-smi (a rehearsal on this machine) the installed Vulkan driver runs, lavapipe here.
if command -v nvidia-smi >/dev/null; then
  icd=/tmp/nvidia_egl_icd.json
  echo '{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.3.0"}}' >"$icd"
  export VK_ICD_FILENAMES="$icd" VK_DRIVER_FILES="$icd"
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
bin=/tmp/gpu-bin
mkdir -p "$bin"
for f in gpu-bin/*.xz; do
  xz -dc "$f" >"$bin/$(basename "$f" .xz)" && chmod +x "$bin/$(basename "$f" .xz)"
done
{
  date -u +%Y-%m-%dT%H:%MZ
  cat gpu-bin/commit.txt
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
} | tee "$out/device.txt"
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "   exit $?"
  tail -n 12 "$out/$name.log"
}
step gpu_launches 60 "$bin/gpu_launches" --nocapture
step fused_kernels 90 "$bin/fused_kernels"
# The quant crate's unit tests that run the GPU kernels (the rest run too; they are quick).
step quant_unit_tests 45 "$bin/quant"
step qat_step_b512 180 "$bin/bench_qat_step" --backend wgpu --batch 512 --rounds 4 --steps 10
step bert_step_32x128 150 "$bin/bench_bert_step" --backend wgpu \
  --checkpoint gpu-bin/minilm-l6 --random-weights --no-memory --batch 32 --seq 128 --rounds 3 --steps 3
# What is left of the call's time decides what else runs, in this order (`optional NAME MIN LIMIT
# FUNC ARGS…` runs `FUNC NAME LIMIT ARGS…`, LIMIT lowered to what is left, when at least MIN s
# are left; or says it skipped NAME).
budget=530
optional() {
  local name=$1 min=$2 limit=$3 left=$((budget - SECONDS))
  shift 3
  if [ "$left" -lt "$min" ]; then
    echo "== $name: skipped, ${SECONDS} s gone"
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  "$1" "$name" "$limit" "${@:2}"
}
# The launch-bound floor: the same steps at the smallest shapes (LeNet-BN at batch 1, MiniLM-L6
# at 1 × 8 tokens), where the GPU's arithmetic is next to nothing and a step costs what its
# launches cost: the host's work (graph, autodiff, burn-fusion's planning, encoding and
# submitting) and each kernel's fixed latency. Where a step at the target shape takes about its
# floor, it is launch-bound and its QAT ratio is the floor's. (Process CPU time cannot tell this:
# CubeCL's and burn-fusion's device threads spin while they wait, so it grows with any wait.)
floor_lenet() { step "$1" "$2" "$bin/bench_qat_step" --backend wgpu --batch 1 --rounds 3 --steps 10; }
floor_bert() {
  step "$1" "$2" "$bin/bench_bert_step" --backend wgpu --checkpoint gpu-bin/minilm-l6 \
    --random-weights --no-memory --batch 1 --seq 8 --rounds 3 --steps 3
}
optional qat_step_b1_floor 20 45 floor_lenet
optional bert_step_1x8_floor 30 70 floor_bert
# The MiniLM step with CubeCL's exclusive memory pages (`QAT_GPU_MEMORY=exclusive`), which on
# lavapipe cut the runtime thread's host work by 38-65% (README, *Host work*): is the step
# faster on a GPU, float and QAT alike?
exclusive_pages() {
  step "$1" "$2" env QAT_GPU_MEMORY=exclusive "$bin/bench_bert_step" --backend wgpu \
    --checkpoint gpu-bin/minilm-l6 --random-weights --no-memory --batch 32 --seq 128 --rounds 3 --steps 3
}
optional bert_step_32x128_exclusive 60 150 exclusive_pages
# Where a step's GPU time goes, kernel by kernel, float beside QAT: `profile NAME LIMIT LABELS
# WINDOWS BENCH ARGS…` runs a bench (its ARGS naming the rounds) for steps of one step under
# CubeCL's profiler (which syncs after every kernel, so its times add up to more than a step) and
# summarizes its tables into $OUT/NAME.txt with kernel_times.awk (LABELS: the bench's variants,
# in its order; WINDOWS: the tables of their steps, as `cargo xtask bench … --kernel-times`
# picks them: see PROFILED in xtask/src/bench.rs).
profile() {
  local name=$1 limit=$2 labels=$3 windows=$4 dir
  shift 4
  dir=$(mktemp -d)
  printf '[profiling.logger]\nlevel = "basic"\nfile = "%s"\nappend = false\n' \
    "$out/$name.profile" >"$dir/cubecl.toml"
  (cd "$dir" && step "$name" "$limit" "$@" --steps 1)
  awk -v labels="$labels" -v windows="$windows" -v top=25 -f xtask/scripts/kernel_times.awk "$out/$name.profile" \
    >"$out/$name.txt" 2>&1
  cat "$out/$name.txt"
  xz -9 "$out/$name.profile" || true
}
root=$PWD
optional bert_step_32x128_profiled 60 100 profile float,qat_w8a8,qat_w4a8 2,3,4 \
  "$bin/bench_bert_step" --backend wgpu --checkpoint "$root/gpu-bin/minilm-l6" --random-weights \
  --no-memory --batch 32 --seq 128 --rounds 1
optional qat_step_b512_profiled 30 60 profile float,qat_w8a8,qat_w4a4 2,4,6 \
  "$bin/bench_qat_step" --backend wgpu --batch 512 --rounds 1
# Last: the same MiniLM step under burn-fusion's beam width 3 (`burn.toml`, read from the working
# directory; burn's default is 5), which on lavapipe cut MiniLM-L6's launches by 11-13% in every
# variant (float 1004 -> 892) but not LeNet-BN's: does it run faster on a GPU?
blocks3() {
  local dir
  dir=$(mktemp -d)
  printf '[fusion.beam_search]\nmax_blocks = 3\n' >"$dir/burn.toml"
  (cd "$dir" && step "$1" "$2" "$bin/bench_bert_step" --backend wgpu \
    --checkpoint "$root/gpu-bin/minilm-l6" --random-weights --no-memory --batch 32 --seq 128 \
    --rounds 3 --steps 3)
}
optional bert_step_32x128_blocks3 60 140 blocks3
# The timed runs' JSON lines (not the profiled runs', whose times include the profiler's syncs),
# then the kernel-time summaries', each with the run's name first ("run": the log's name).
{
  for log in "$out"/*.log "$out"/*_profiled.txt; do
    [ -e "$log" ] || continue
    name=$(basename "${log%.*}")
    case "$log" in *profiled.log) continue ;; esac
    grep -h '^{' "$log" | sed "s/^{/{\"run\":\"$name\",/"
  done
} >"$out/results.jsonl"
# The issue's targets beside what this run measured (the README's table, ready to fill in), and
# every timed run's ratios: `$OUT/targets.md`.
ratio() {
  grep -h "^{\"run\":\"$1\"," "$out/results.jsonl" | grep -o "\"$2\":[0-9.]*" | head -n 1 | cut -d: -f2
}
{
  echo "$(head -n 1 "$out/device.txt"), $(sed -n 3p "$out/device.txt"), build $(cut -c1-7 gpu-bin/commit.txt)"
  echo
  echo "| QAT step vs float step | target | measured |"
  echo "|---|---:|---:|"
  echo "| LeNet-BN W8A8, batch 512 | ≤ 1.3× | $(ratio qat_step_b512 qat_w8a8_ratio)× |"
  echo "| LeNet-BN W4A4, batch 512 | ≤ 1.4× | $(ratio qat_step_b512 qat_w4a4_ratio)× |"
  echo "| MiniLM-L6 W8A8, 32 × 128 | ≤ 1.15× | $(ratio bert_step_32x128 w8a8_ratio)× |"
  echo
  echo "Every timed run (ratios to its float step):"
  while read -r line; do
    case "$line" in *_ratio*) ;; *) continue ;; esac
    name=$(echo "$line" | grep -o '"run":"[^"]*"' | cut -d'"' -f4)
    ratios=$(echo "$line" | grep -o '"[a-z0-9_]*_ratio":[0-9.]*' | tr -d '"' | sed 's/_ratio:/ /' | paste -sd, - | sed 's/,/, /g')
    echo "- $name: $ratios"
  done <"$out/results.jsonl"
} | tee "$out/targets.md"
