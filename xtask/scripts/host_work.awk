# Summarizes where a step bench's host CPU time goes, per variant, from
# `perf script -F comm,pid,tid,time,ip,sym` over `perf record -e cpu-clock -c PERIOD -g` of the
# bench (`cargo xtask bench bert-step|qat-step --backend wgpu --host-work` runs both).
#
# The benches name their calling thread `T<variant>` over each variant's timed steps (see
# `name_thread` in crates/trainer/examples/common/bench_args.rs), so a sample falls in the window
# its process's main thread last showed. Threads by role: the main thread (the model's code,
# autodiff, recording operations), burn-fusion's server (`DSU-*`: fusion planning, launching),
# the CubeCL runtime's server (`DSD-*`: encoding and submitting; on lavapipe it also runs the
# shaders). A sample is a wait when its innermost frames are the device channels' spin and yield
# loops (their threads spin while a queue is full or empty), a shader when the runtime's thread
# runs code with no symbol (lavapipe's JIT), and work otherwise. Host work is what a faster GPU
# would not remove: on a GPU whose step is host-bound, the QAT step costs about its host work's
# ratio.
#
# Variables: labels (the variants, float first), steps (a variant's timed steps in a round),
# period_ms (the CPU time each sample stands for).
function is_wait(f1, f2, f3,    s) {
  s = f1 "\n" f2 "\n" f3
  return s ~ /spin_loop|yield_now|sched_yield|Server::start|Server::park|thread::park|submit_inner|DeviceClient::enqueue|(^|[^a-z_])schedule|finish_task_switch|futex/
}
function flush(    role, kind, w) {
  if (!have) return
  have = 0
  if (pid == tid) {
    role = "model"
    w = comm ~ /^T/ ? substr(comm, 2) : ""
    # A variant's window opening again: its next round.
    if (w != "" && w != window[pid]) rounds[w]++
    window[pid] = w
  } else if (comm ~ /^DSU/) role = "fusion"
  else if (comm ~ /^DSD/) role = "runtime"
  else role = "other"
  w = window[pid]
  if (w == "") return
  if (is_wait(frame[1], frame[2], frame[3])) kind = "wait"
  else if (role != "model" && role != "fusion" && (frame[1] == "" || frame[1] ~ /\[unknown\]/)) kind = "shader"
  else kind = "work"
  n[w, rounds[w], role, kind]++
}
BEGIN {
  if (labels == "") labels = "float,qat_w8a8,qat_w4a8"
  if (steps == "") steps = 1
  if (period_ms == "") period_ms = 0.25
  nlabels = split(labels, label, ",")
}
# A sample's header: `COMM PID/TID TIME:` (COMM may hold spaces).
/^[^ \t]/ {
  flush()
  have = 1
  nf = NF
  split($(nf - 1), ids, "/")
  pid = ids[1]; tid = ids[2]
  comm = $1
  for (i = 2; i < nf - 1; i++) comm = comm " " $i
  nframes = 0
  delete frame
  next
}
# A frame: `ADDRESS SYMBOL`.
/^[ \t]+[0-9a-f]+ / {
  if (!have) next
  line = $0
  sub(/^[ \t]+[0-9a-f]+ /, "", line)
  if (nframes < 3) frame[++nframes] = line
  next
}
# `v`'s samples in round `r` of `role` and `kind`, as ms per step.
function ms(v, r, role, kind) { return n[v, r, role, kind] * period_ms / steps }
function host_ms(v, r) { return ms(v, r, "model", "work") + ms(v, r, "fusion", "work") + ms(v, r, "runtime", "work") }
END {
  flush()
  printf "Host CPU time per step by thread (perf, cpu-clock every %s ms; work excludes the device threads' spin-waits;\n", period_ms
  printf "each variant's round of median host work, of %d steps, as the bench takes the median round)\n\n", steps
  printf "%-10s %7s %10s %10s %10s %12s %8s %10s %10s\n", "variant", "rounds", "model ms", "fusion ms", "runtime ms", "host work ms", "x float", "waits ms", "shaders ms"
  json = "{\"host_work\":{\"period_ms\":" period_ms ",\"steps\":" steps ",\"variants\":["
  for (i = 1; i <= nlabels; i++) {
    v = label[i]
    if (!(v in rounds)) {
      printf "host_work.awk: no samples in variant %s's window (did the bench name its thread?)\n", v > "/dev/stderr"
      missing = 1
      continue
    }
    # The round of median host work (the upper one for an even count), by selection.
    nr = rounds[v]
    for (r = 1; r <= nr; r++) { order[r] = r }
    for (a = 1; a <= nr; a++)
      for (b = a + 1; b <= nr; b++)
        if (host_ms(v, order[b]) < host_ms(v, order[a])) { t = order[a]; order[a] = order[b]; order[b] = t }
    r = order[int(nr / 2) + 1]
    model = ms(v, r, "model", "work")
    fusion = ms(v, r, "fusion", "work")
    runtime = ms(v, r, "runtime", "work")
    host = model + fusion + runtime
    waits = ms(v, r, "model", "wait") + ms(v, r, "fusion", "wait") + ms(v, r, "runtime", "wait") + ms(v, r, "other", "wait")
    shaders = ms(v, r, "runtime", "shader") + ms(v, r, "other", "shader")
    if (i == 1) float_host = host
    ratio = float_host > 0 ? host / float_host : 0
    printf "%-10s %7d %10.2f %10.2f %10.2f %12.2f %7.2fx %10.2f %10.2f\n", v, nr, model, fusion, runtime, host, ratio, waits, shaders
    json = json (i > 1 ? "," : "") sprintf("{\"name\":\"%s\",\"rounds\":%d,\"model_ms\":%.3f,\"fusion_ms\":%.3f,\"runtime_ms\":%.3f,\"host_ms\":%.3f,\"waits_ms\":%.3f,\"shaders_ms\":%.3f}", v, nr, model, fusion, runtime, host, waits, shaders)
  }
  print json "]}}"
  if (missing) exit 1
}
