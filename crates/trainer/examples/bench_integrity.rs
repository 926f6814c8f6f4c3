//! What integrity costs: writing a model or checkpoint atomically with its SHA-256 file, and
//! reading it back verified, against a plain `std::fs::write` / `read` of the same bytes.
//!
//! Run through `cargo xtask bench integrity [--mb N] [--rounds R]`. The last line is one JSON object.

use std::time::Instant;

use trainer::integrity::{read_checked, sha256_hex, write_checked};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (mb, rounds) = (arg("--mb", 32), arg("--rounds", 5));
    let bytes: Vec<u8> = (0..mb << 20)
        .map(|i| (i * 2654435761usize >> 13) as u8)
        .collect();
    let dir = std::env::temp_dir().join(format!("bench-integrity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (plain, checked) = (dir.join("plain.bpk"), dir.join("checked.bpk"));
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let mut samples = [vec![], vec![], vec![], vec![], vec![]];
    for _ in 0..rounds {
        samples[0].push(time(&mut || std::fs::write(&plain, &bytes).unwrap()));
        samples[1].push(time(&mut || write_checked(&checked, &bytes).unwrap()));
        samples[2].push(time(&mut || drop(std::fs::read(&plain).unwrap())));
        samples[3].push(time(&mut || drop(read_checked(&checked).unwrap())));
        samples[4].push(time(&mut || drop(sha256_hex(&bytes))));
    }
    let [write, write_checked_ms, read, read_checked_ms, hash] = samples.map(median);
    println!("{mb} MiB, median of {rounds} rounds");
    println!("| operation | ms | MB/s |\n|---|---:|---:|");
    for (name, ms) in [
        ("std::fs::write", write),
        (
            "write_checked (atomic + sync + sha256 file)",
            write_checked_ms,
        ),
        ("std::fs::read", read),
        ("read_checked (read + verify)", read_checked_ms),
        ("sha256 alone", hash),
    ] {
        println!(
            "| {name} | {ms:.1} | {:.0} |",
            mb as f64 * 1.048576 / (ms / 1e3)
        );
    }
    println!(
        "{{\"bench\":\"integrity\",\"mb\":{mb},\"write_ms\":{write:.2},\"write_checked_ms\":{write_checked_ms:.2},\"read_ms\":{read:.2},\"read_checked_ms\":{read_checked_ms:.2},\"sha256_ms\":{hash:.2},\"sha256_mb_per_s\":{:.0}}}",
        mb as f64 * 1.048576 / (hash / 1e3)
    );
    std::fs::remove_dir_all(dir).ok();
}
