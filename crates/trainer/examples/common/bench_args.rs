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

/// Names the calling thread `name` (Linux; elsewhere nothing), so that a profiler's samples
/// tell which variant's timed steps they fall in: the benches name it `T<variant>` over those
/// steps and `idle` after (`cargo xtask bench … --host-work`, `xtask/scripts/host_work.awk`).
/// The name shows only to the OS and profilers; Rust's own thread name stays.
pub fn name_thread(name: &str) {
    #[cfg(target_os = "linux")]
    {
        // At most 15 bytes; a longer name is refused, and the marks are best effort.
        let _ = std::fs::write("/proc/thread-self/comm", name);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = name;
}

/// The median of `v` (the upper one for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
