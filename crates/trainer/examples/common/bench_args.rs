//! Command-line and statistics helpers the benchmark examples share.
#![allow(dead_code)]

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

/// The number after `name` on the command line, or `default`.
pub fn number(name: &str, default: usize) -> usize {
    arg(name, &default.to_string())
        .parse()
        .unwrap_or_else(|_| panic!("{name} takes a number"))
}

/// The CPU time this process has used so far, all threads, in ms (NaN where it cannot be read).
/// Over a GPU step it is the host's share of the work (building the graph, autodiff, burn-fusion's
/// planning, encoding launches), which the step's wall time hides when the GPU is the bottleneck;
/// on lavapipe it also holds the shaders, which run on the CPU.
pub fn cpu_ms() -> f64 {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec for the call's duration.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } == 0 {
            return now.tv_sec as f64 * 1e3 + now.tv_nsec as f64 / 1e6;
        }
    }
    f64::NAN
}

/// The median of `v` (the upper one for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
