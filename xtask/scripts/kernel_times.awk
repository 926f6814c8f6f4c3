# Kernel time by kernel, per step variant, from CubeCL's profiling log: where a QAT step's GPU
# time goes, beside the float step's. Plain awk, so it runs on the GPU machine too (no toolchain).
#
# CubeCL (profiling logger at level "basic", set by a `cubecl.toml` in the working directory:
# `[profiling.logger]` with `level = "basic"` and `file = "…"`) writes one summary table per
# device sync, of the kernels run since the last one, and `bench_bert_step` / `bench_qat_step`
# sync after each variant's steps in a round. So window 1 is the warm-up of every variant
# (autotune included) and windows 2, 3, … are the first round's variants in the bench's order
# (float, then the QAT schemes), each its `--steps` steps (`bench_qat_step`'s with the forward
# pass that reads them back); the windows after them are later rounds and the launch-counting
# steps. With `--steps 1` a bert-step window's kernel count is the bench's launch count.
#
#   awk -v labels=float,qat_w8a8,qat_w4a8 -f xtask/scripts/kernel_times.awk profile.log
#
# Variables: `labels` names windows 2, 3, … (the first is the baseline the others are compared
# with; default float,qat_w8a8,qat_w4a8, bert-step's; qat-step's are float,qat_w8a8,qat_w4a4),
# `top` how many kernels the table lists (default 15).
# Kernel instances that differ only in their hash suffix are added up under one name; this
# crate's kernels (`quant::math::fused::cube::kernels`) are marked `*`.

function to_ms(text,    value) {
  value = text + 0
  if (text ~ /ns$/) return value / 1e6
  if (text ~ /µs$/ || text ~ /us$/) return value / 1e3
  if (text ~ /ms$/) return value
  if (text ~ /s$/) return value * 1e3
  return value
}

function trim(text) {
  gsub(/^[ \t]+|[ \t]+$/, "", text)
  return text
}

# The kernel's name without its instance hash, cut to a readable width.
function kernel_name(text) {
  sub(/_[0-9a-f]+$/, "", text)
  gsub(/ +\| +/, "|", text)
  if (length(text) > 56) text = substr(text, 1, 53) "..."
  return text
}

function share(part, whole) { return whole > 0 ? 100 * part / whole : 0 }

function ratio(value, baseline) { return baseline > 0 ? value / baseline : 0 }

function ours(name) {
  return name ~ /^(Observe|FoldAndFakeQuant|ReduceToRangeKeys|FakeQuant|FakeQuantWithMask|ApplyMask|MaskedGrad|LsqBackward|AddIntoTableRows|Reduce|RoundToStepProduct)$/
}

BEGIN {
  if (labels == "") labels = "float,qat_w8a8,qat_w4a8"
  if (top == "") top = 15
  variants = split(labels, label, ",")
  window = 0
  inside = 0
}

/^\| Name / { window++; inside = 1; next }

inside && /^\| Total / {
  inside = 0
  next
}

# A kernel's row in a variant's window (the warm-up's and the counting steps' are passed over).
inside && window >= 2 && window <= variants + 1 && /^\| / {
  fields = split($0, part, "|")
  # `| name (may hold " | ") | duration | count | ratio |`: the last three cells are fixed.
  count = trim(part[fields - 2]) + 0
  ms = to_ms(trim(part[fields - 3]))
  name = ""
  for (f = 2; f <= fields - 4; f++) name = name (f > 2 ? "|" : "") part[f]
  name = kernel_name(trim(name))
  time[window, name] += ms
  runs[window, name] += count
  total[window] += ms
  launches[window] += count
  if (ours(name)) { our_time[window] += ms; our_runs[window] += count }
  if (!(name in known)) { known[name] = 1; names[++distinct] = name }
}

END {
  if (window < 1 + variants) {
    printf "kernel_times: %d summary windows, fewer than the warm-up and %d variants (%s): was the log written at level \"basic\" by a bench run?\n", window, variants, labels > "/dev/stderr"
    exit 1
  }
  printf "Kernel time of each variant's steps in the first round (CubeCL's profiler); * = this crate's kernels\n\n"
  printf "%-10s %9s %12s %14s %10s\n", "variant", "kernels", "kernel ms", "ours ms", "x " label[1]
  for (v = 1; v <= variants; v++) {
    w = v + 1
    printf "%-10s %9d %12.3f %8.3f (%2.0f%%) %9.2fx\n", label[v], launches[w], total[w], our_time[w], share(our_time[w], total[w]), ratio(total[w], total[2])
  }
  # The kernels by what each variant adds over the baseline's time, largest first.
  for (i = 1; i <= distinct; i++) {
    name = names[i]
    added[name] = 0
    for (v = 2; v <= variants; v++) {
      delta = time[v + 1, name] - time[2, name]
      if (delta > added[name]) added[name] = delta
    }
    order[i] = name
  }
  for (i = 2; i <= distinct; i++) {
    name = order[i]
    for (j = i - 1; j >= 1 && added[order[j]] < added[name]; j--) order[j + 1] = order[j]
    order[j + 1] = name
  }
  printf "\nkernels by the most time a variant adds over %s (ms, launches):\n", label[1]
  printf "  %-58s", "kernel"
  for (v = 1; v <= variants; v++) printf " %16s", label[v]
  printf "\n"
  for (i = 1; i <= distinct && i <= top; i++) {
    name = order[i]
    printf "%s %-58s", ours(name) ? "*" : " ", name
    for (v = 1; v <= variants; v++) printf " %9.3f (%4d)", time[v + 1, name], runs[v + 1, name]
    printf "\n"
  }
}
