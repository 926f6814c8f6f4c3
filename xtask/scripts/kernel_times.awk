# Kernel time by kernel, per step variant, from CubeCL's profiling log: where a QAT step's GPU
# time goes, beside the float step's, as tables and, on the last line, one JSON object. Plain
# awk, so it runs on the GPU machine too (no toolchain).
#
# CubeCL (profiling logger at level "basic", set by a `cubecl.toml` in the working directory:
# `[profiling.logger]` with `level = "basic"` and `file = "…"`) writes one summary table per
# device sync, of the kernels run since the last one, and the step benches sync where a
# variant's steps end. Window 1 is the warm-up of every variant (autotune included); after it
# `bench_bert_step`'s windows 2, 3, 4 are the first round's variants in its order (float, then
# the QAT schemes); `bench_qat_step` syncs after each variant's steps and after the forward pass
# that reads them back, so its windows 2, 4, 6 are the first round's steps. `cargo xtask bench …
# --kernel-times` picks these; with `--steps 1` a window's kernel count is then the bench's
# launch count.
#
#   awk -v labels=float,qat_w8a8,qat_w4a8 -v windows=2,3,4 -f xtask/scripts/kernel_times.awk profile.log
#
# Variables: `labels` names the variants (the first is the baseline the others are compared
# with; default float,qat_w8a8,qat_w4a8, bert-step's; qat-step's are float,qat_w8a8,qat_w4a4),
# `windows` their windows (default 2, 3, …; qat-step's are 2,4,6), `top` how many kernels the
# table lists (default 15).
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

# `text` as a JSON string.
function json_string(text) {
  gsub(/\\/, "\\\\", text)
  gsub(/"/, "\\\"", text)
  return "\"" text "\""
}

# The separator before item `i` of a JSON list.
function comma(i) { return i > 1 ? "," : "" }

function share(part, whole) { return whole > 0 ? 100 * part / whole : 0 }

function ratio(value, baseline) { return baseline > 0 ? value / baseline : 0 }

function ours(name) {
  return name ~ /^(Observe|FoldAndFakeQuant|ReduceToRangeKeys|FakeQuant|FakeQuantWithMask|ApplyMask|MaskedGrad|LsqBackward|AddIntoTableRows|Reduce|RoundToStepProduct)$/
}

BEGIN {
  if (labels == "") labels = "float,qat_w8a8,qat_w4a8"
  if (top == "") top = 15
  variants = split(labels, label, ",")
  if (windows == "") for (v = 1; v <= variants; v++) variant_of[v + 1] = v
  else {
    if (split(windows, numbers, ",") != variants) {
      printf "kernel_times: %d labels (%s) but windows %s\n", variants, labels, windows > "/dev/stderr"
      failed = 1
      exit 2
    }
    for (v = 1; v <= variants; v++) variant_of[numbers[v] + 0] = v
  }
  last = 0
  for (w in variant_of) if (w + 0 > last) last = w + 0
  window = 0
  inside = 0
}

/^\| Name / { window++; inside = 1; next }

inside && /^\| Total / {
  inside = 0
  next
}

# A kernel's row in a variant's window (the warm-up's, read-backs' and counting steps' are
# passed over).
inside && (window in variant_of) && /^\| / {
  v = variant_of[window]
  fields = split($0, part, "|")
  # `| name (may hold " | ") | duration | count | ratio |`: the last three cells are fixed.
  count = trim(part[fields - 2]) + 0
  ms = to_ms(trim(part[fields - 3]))
  name = ""
  for (f = 2; f <= fields - 4; f++) name = name (f > 2 ? "|" : "") part[f]
  name = kernel_name(trim(name))
  time[v, name] += ms
  runs[v, name] += count
  total[v] += ms
  launches[v] += count
  if (ours(name)) { our_time[v] += ms; our_runs[v] += count }
  if (!(name in known)) { known[name] = 1; names[++distinct] = name }
}

END {
  if (failed) exit 2
  if (window < last) {
    printf "kernel_times: %d summary windows, fewer than the %d the variants' windows need (%s): was the log written at level \"basic\" by a bench run?\n", window, last, labels > "/dev/stderr"
    exit 1
  }
  printf "Kernel time of each variant's profiled steps (CubeCL's profiler); * = this crate's kernels\n\n"
  printf "%-10s %9s %12s %14s %10s\n", "variant", "kernels", "kernel ms", "ours ms", "x " label[1]
  for (v = 1; v <= variants; v++) {
    printf "%-10s %9d %12.3f %8.3f (%2.0f%%) %9.2fx\n", label[v], launches[v], total[v], our_time[v], share(our_time[v], total[v]), ratio(total[v], total[1])
  }
  # The kernels by what each variant adds over the baseline's time, largest first.
  for (i = 1; i <= distinct; i++) {
    name = names[i]
    added[name] = 0
    for (v = 2; v <= variants; v++) {
      delta = time[v, name] - time[1, name]
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
    for (v = 1; v <= variants; v++) printf " %9.3f (%4d)", time[v, name], runs[v, name]
    printf "\n"
  }
  # The same as one JSON object, the last line, for programs.
  printf "{\"kernel_times\":{\"variants\":["
  for (v = 1; v <= variants; v++) {
    printf "%s{\"name\":%s,\"kernels\":%d,\"kernel_ms\":%.4f,\"ours_ms\":%.4f,\"ours_kernels\":%d}", comma(v), json_string(label[v]), launches[v], total[v], our_time[v], our_runs[v]
  }
  printf "],\"kernels\":["
  for (i = 1; i <= distinct && i <= top; i++) {
    name = order[i]
    printf "%s{\"name\":%s,\"ours\":%s,\"ms\":[", comma(i), json_string(name), ours(name) ? "true" : "false"
    for (v = 1; v <= variants; v++) printf "%s%.4f", comma(v), time[v, name]
    printf "],\"launches\":["
    for (v = 1; v <= variants; v++) printf "%s%d", comma(v), runs[v, name]
    printf "]}"
  }
  printf "]}}\n"
}
