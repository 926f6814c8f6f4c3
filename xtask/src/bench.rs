//! `cargo xtask bench <name>`: runs a benchmark binary with the workspace's optimised build.
//! `bench bert-step --kernel-times` (or `qat-step`) runs it under CubeCL's profiler and prints
//! where each variant's kernel time goes (`xtask/scripts/kernel_times.awk`); `--host-work` runs
//! it under Linux perf and prints each variant's host CPU time per step by thread, without the
//! device threads' spin-waits (`xtask/scripts/host_work.awk`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Benchmark name → (package, example binary).
const BENCHES: &[(&str, &str, &str)] = &[
    ("fake-quant", "trainer", "bench_fake_quant"),
    ("qat-step", "trainer", "bench_qat_step"),
    ("integrity", "trainer", "bench_integrity"),
    ("bert-step", "trainer", "bench_bert_step"),
    ("deploy", "trainer", "bench_deploy"),
];

pub fn run(args: &[String]) -> Result<()> {
    let names = BENCHES.iter().map(|b| b.0).collect::<Vec<_>>().join(", ");
    let Some(name) = args.first() else {
        bail!("name a benchmark: {names}");
    };
    let Some((_, package, example)) = BENCHES.iter().find(|b| b.0 == name) else {
        bail!("unknown benchmark `{name}`; available: {names}");
    };
    let mut cmd = Command::new(env!("CARGO"));
    // The workspace's manifest named, so that the bench can run in another directory too.
    cmd.args(["run", "--quiet", "--manifest-path"])
        .arg(crate::root().join("Cargo.toml"))
        .args(["-p", package, "--example", example, "--"]);
    for flag in [KERNEL_TIMES, HOST_WORK] {
        if !args.iter().any(|a| a == flag) {
            continue;
        }
        let Some((_, variants, windows, extra)) = PROFILED.iter().find(|b| b.0 == name) else {
            bail!(
                "{flag} is for bert-step and qat-step, which mark where their variants' steps run"
            );
        };
        refuse_cpu_backend(&args[1..], flag)?;
        return if flag == KERNEL_TIMES {
            kernel_times(cmd, &args[1..], (variants, windows), extra)
        } else {
            host_work(cmd, &args[1..], variants, extra)
        };
    }
    cmd.args(&args[1..]);
    crate::run_command(cmd)
}

/// The flag that runs a bench under CubeCL's profiler.
const KERNEL_TIMES: &str = "--kernel-times";

/// The flag that runs a bench under Linux perf and prints its host work per variant.
const HOST_WORK: &str = "--host-work";

/// The benches `--kernel-times` and `--host-work` profile: name → (their variants in the order
/// they run; the profiler's tables, one per device sync, that hold each variant's steps in
/// round 1: those whose kernels the bench's launch table counts; flags added to the run).
const PROFILED: &[(&str, &str, &str, &[&str])] = &[
    // The warm-up, then each variant's steps (the memory children would profile into the same
    // log).
    (
        "bert-step",
        "float,qat_w8a8,qat_w4a8",
        "2,3,4",
        &["--no-memory"],
    ),
    // The warm-up, then each variant's steps and the forward pass that reads them back.
    ("qat-step", "float,qat_w8a8,qat_w4a4", "2,4,6", &[]),
];

/// Runs the bench `cmd` under CubeCL's profiler (a `cubecl.toml` in a scratch working directory,
/// which CubeCL finds there) for one round, of one step unless `args` say otherwise, then
/// summarizes its kernel times per variant (`variants` and their `windows`, comma-separated)
/// with `xtask/scripts/kernel_times.awk`. A relative `--checkpoint` is taken from the workspace
/// root, where the bench runs otherwise.
fn kernel_times(
    mut cmd: Command,
    args: &[String],
    (variants, windows): (&str, &str),
    extra: &[&str],
) -> Result<()> {
    if args.iter().any(|a| a == "--rounds") {
        bail!("{KERNEL_TIMES} runs one round: the profiler's tables it reads are round 1's");
    }
    let dir = std::env::temp_dir().join("burn-qat-kernel-times");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let log = dir.join("profile.log");
    let config = format!(
        "[profiling.logger]\nlevel = \"basic\"\nfile = {:?}\nappend = false\n",
        log.display().to_string()
    );
    let config_path = dir.join("cubecl.toml");
    std::fs::write(&config_path, config)
        .with_context(|| format!("could not write {}", config_path.display()))?;
    pass_args(&mut cmd, args, KERNEL_TIMES);
    if !args.iter().any(|a| a == "--steps") {
        cmd.args(["--steps", "1"]);
    }
    cmd.args(["--rounds", "1"]).args(extra);
    // A log left by an earlier run must not stand in for this one's.
    let _ = std::fs::remove_file(&log);
    crate::run_command_in(cmd, &dir)?;
    if !log.exists() {
        bail!(
            "the bench wrote no profile to {}: {KERNEL_TIMES} needs a CubeCL backend (--backend wgpu, vulkan, metal or cuda)",
            log.display()
        );
    }
    run_awk(
        "kernel_times.awk",
        &[format!("labels={variants}"), format!("windows={windows}")],
        &log,
    )?;
    println!("(profile log: {})", log.display());
    Ok(())
}

/// Runs `xtask/scripts/<script>` with awk's `vars` (`name=value`) on `input`, its output to ours.
fn run_awk(script: &str, vars: &[String], input: &Path) -> Result<()> {
    let mut awk = Command::new("awk");
    for var in vars {
        awk.arg("-v").arg(var);
    }
    awk.arg("-f")
        .arg(crate::root().join("xtask/scripts").join(script))
        .arg(input);
    crate::run_command_in(awk, Path::new("."))
}

/// Refuses `flag` on a backend with no device threads nor CubeCL kernels (Flex, NdArray): what
/// it measures is not there.
fn refuse_cpu_backend(args: &[String], flag: &str) -> Result<()> {
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map_or("flex", String::as_str);
    if matches!(backend, "flex" | "ndarray") {
        bail!(
            "{flag} measures CubeCL's device pipeline, which the {backend} backend does not run: add --backend wgpu (or vulkan, metal, cuda)"
        );
    }
    Ok(())
}

/// Passes the bench `args` but `flag` to `cmd`, a relative `--checkpoint` taken from the
/// workspace root (the bench runs in a scratch directory).
fn pass_args(cmd: &mut Command, args: &[String], flag: &str) {
    let mut rest = args.iter().filter(|a| *a != flag);
    while let Some(a) = rest.next() {
        cmd.arg(a);
        if a == "--checkpoint"
            && let Some(dir) = rest.next()
        {
            cmd.arg(crate::root().join(dir));
        }
    }
}

/// The number after `name` in `args`, or `default`.
fn number(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{name} takes a number")),
    }
}

/// Runs the bench `cmd` under `perf record` (a CPU-clock sample every 0.25 ms of each thread's
/// CPU time, with call chains), 3 rounds of 3 steps unless `args` say otherwise, then summarizes
/// each variant's (`variants`, comma-separated) host CPU time per step by thread with
/// `xtask/scripts/host_work.awk`.
fn host_work(cmd: Command, args: &[String], variants: &str, extra: &[&str]) -> Result<()> {
    let perf = Command::new("perf").arg("--version").output();
    if !perf.is_ok_and(|out| out.status.success()) {
        bail!("{HOST_WORK} needs Linux perf on the PATH (Debian: apt-get install linux-perf)");
    }
    let steps = number(args, "--steps", 3)?;
    let dir = std::env::temp_dir().join("burn-qat-host-work");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    let (data, script) = (dir.join("perf.data"), dir.join("perf.txt"));
    let _ = std::fs::remove_file(&data);
    let mut record = Command::new("perf");
    record
        .args([
            "record",
            "--quiet",
            "-e",
            "cpu-clock",
            "-c",
            "250000",
            "-g",
            "-o",
        ])
        .arg(&data)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    pass_args(&mut record, args, HOST_WORK);
    if !args.iter().any(|a| a == "--rounds") {
        record.args(["--rounds", "3"]);
    }
    if !args.iter().any(|a| a == "--steps") {
        record.args(["--steps", &steps.to_string()]);
    }
    record.args(extra);
    crate::run_command_in(record, &dir)?;
    let out = Command::new("perf")
        .args([
            "script",
            "--no-inline",
            "-F",
            "comm,pid,tid,time,ip,sym",
            "-i",
        ])
        .arg(&data)
        .output()
        .context("could not run perf script")?;
    if !out.status.success() {
        bail!(
            "perf script failed on {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&script, &out.stdout)
        .with_context(|| format!("could not write {}", script.display()))?;
    run_awk(
        "host_work.awk",
        &[
            format!("labels={variants}"),
            format!("steps={steps}"),
            "period_ms=0.25".into(),
        ],
        &script,
    )?;
    println!("(perf samples: {})", script.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One summary table as CubeCL's profiler writes it at a device sync.
    fn table(rows: &[(&str, &str, usize)]) -> String {
        let mut text = String::from(
            "|⎺⎺⎺⎺| \n| Name                 | Duration   | Num Computed | Ratio |\n|⎼⎼⎼⎼| \n",
        );
        for (name, duration, count) in rows {
            text += &format!("| {name:<20} | {duration:<10} | {count:<12} | 10 %  |\n");
        }
        text + "|⎼⎼⎼⎼| \n| Total                | 1s         | 99           | 100 % |\n|⎯⎯⎯⎯| \n"
    }

    /// `kernel_times.awk` on `log` with `vars` (`name=value`): (exit status, stdout, stderr).
    fn summarize_with(log: &str, vars: &[&str]) -> (bool, String, String) {
        awk_script("kernel_times.awk", log, vars)
    }

    /// `xtask/scripts/<script>` on `log` with `vars` (`name=value`): (exit status, stdout,
    /// stderr).
    fn awk_script(script: &str, log: &str, vars: &[&str]) -> (bool, String, String) {
        let dir = std::env::temp_dir().join(format!("awk-script-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Named by content, so that tests running at once never share a file.
        let path = dir.join(format!("{script}-{:x}.log", fnv1a(log)));
        std::fs::write(&path, log).unwrap();
        let mut awk = Command::new("awk");
        for var in vars {
            awk.args(["-v", var]);
        }
        let out = awk
            .arg("-f")
            .arg(crate::root().join("xtask/scripts").join(script))
            .arg(&path)
            .output()
            .expect("awk runs");
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// `kernel_times.awk` on `log` with its defaults (bert-step's variants and windows).
    fn summarize(log: &str) -> (bool, String, String) {
        summarize_with(log, &[])
    }

    #[test]
    fn each_variant_window_is_summed_and_compared_with_the_float_step() {
        let warm_up = table(&[("Autotune_00aa11bb", "900ms", 500)]);
        let float = table(&[
            ("MatmulEntry | TensorArgs_1234abcd", "2ms", 3),
            ("ElemwiseFuse_0000ffff", "500µs", 4),
            ("ElemwiseFuse_1111eeee", "500µs", 1),
        ]);
        let w8a8 = table(&[
            ("MatmulEntry | TensorArgs_1234abcd", "2ms", 3),
            ("ElemwiseFuse_0000ffff", "1.5ms", 6),
            ("Observe_c22a3b59", "3ms", 2),
            ("ApplyMask_059b137e", "250000ns", 5),
        ]);
        let w4a8 = table(&[
            ("MatmulEntry | TensorArgs_1234abcd", "0.002s", 3),
            ("LsqBackward_5e5e5e5e", "4ms", 2),
        ]);
        // Per-execution lines (a finer profiling level) outside the tables are not counted.
        let log = format!("{warm_up}| 22.24µs    | Stray_aaaa\n{float}{w8a8}{w4a8}{float}");
        let (ok, out, err) = summarize(&log);
        assert!(ok, "{err}");
        let line = |start: &str| {
            out.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line starting {start:?} in\n{out}"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(line("float "), "float 8 3.000 0.000 ( 0%) 1.00x");
        assert_eq!(line("qat_w8a8 "), "qat_w8a8 16 6.750 3.250 (48%) 2.25x");
        assert_eq!(line("qat_w4a8 "), "qat_w4a8 5 6.000 4.000 (67%) 2.00x");
        // By the most time a variant adds: LSQ backward (+4), observe (+3), the fused chains'
        // two instances together (+0.5), the mask (+0.25); the matmul adds nothing.
        let order: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("kernels by"))
            .skip(2)
            .take_while(|l| !l.starts_with('{'))
            .map(|l| {
                l.trim_start_matches(['*', ' '])
                    .split_whitespace()
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            order,
            [
                "LsqBackward",
                "Observe",
                "ElemwiseFuse",
                "ApplyMask",
                "MatmulEntry|TensorArgs"
            ]
        );
        assert!(line("* Observe").contains("3.000 ( 2)"), "{out}");
        assert!(line("  ElemwiseFuse").starts_with("ElemwiseFuse 1.000 ( 5) 1.500 ( 6)"));
        // The last line says the same for programs.
        let json: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap()).expect("a JSON last line");
        let summary = &json["kernel_times"];
        let w8a8 = &summary["variants"][1];
        assert_eq!(w8a8["name"], "qat_w8a8");
        assert_eq!(w8a8["kernels"], 16);
        assert_eq!(w8a8["ours_kernels"], 7);
        assert_eq!(w8a8["kernel_ms"], 6.75);
        let first = &summary["kernels"][0];
        assert_eq!(first["name"], "LsqBackward");
        assert_eq!(first["ours"], true);
        assert_eq!(first["launches"], serde_json::json!([0, 0, 2]));
        assert_eq!(summary["kernels"][4]["name"], "MatmulEntry|TensorArgs");
    }

    #[test]
    fn named_windows_pass_over_the_tables_between_them() {
        // Each variant's steps, then a forward pass that reads them back (as qat-step's).
        let steps = |ms| table(&[("DirectConv2dKernel_0a0b0c0d", ms, 6)]);
        let read_back = table(&[("DirectConv2dKernel_0a0b0c0d", "100ms", 3)]);
        let log = [
            steps("900ms"),
            steps("1ms"),
            read_back.clone(),
            steps("2ms"),
            read_back.clone(),
            steps("4ms"),
            read_back,
        ]
        .concat();
        let vars = ["labels=float,qat_w8a8,qat_w4a4", "windows=2,4,6"];
        let (ok, out, err) = summarize_with(&log, &vars);
        assert!(ok, "{err}");
        for expected in [
            "float 6 1.000 0.000 ( 0%) 1.00x",
            "qat_w8a8 6 2.000 0.000 ( 0%) 2.00x",
            "qat_w4a4 6 4.000 0.000 ( 0%) 4.00x",
        ] {
            let found = out
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == expected);
            assert!(found, "no line {expected:?} in\n{out}");
        }
        let (ok, _, err) = summarize_with(&log, &["labels=float,qat_w8a8", "windows=2,4,6"]);
        assert!(!ok);
        assert!(err.contains("2 labels"), "{err}");
    }

    #[test]
    fn too_few_windows_for_the_variants_is_an_error() {
        let (ok, _, err) = summarize(&table(&[("Observe_c22a3b59", "3ms", 2)]).repeat(2));
        assert!(!ok);
        assert!(err.contains("2 summary windows, fewer than the 4"), "{err}");
    }

    /// The summary marks this crate's kernels by name: every kernel the quant crate launches
    /// (`#[cube(launch)]` in its kernels' files, CubeCL naming them in CamelCase) and no other.
    #[test]
    fn the_summary_knows_every_kernel_of_the_quant_crate() {
        let folder = crate::root().join("crates/quant/src/math/fused/cube/kernels");
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        let kernels: String = files
            .iter()
            .map(|file| std::fs::read_to_string(file).unwrap())
            .collect();
        let mut launched: Vec<String> = kernels
            .split("#[cube(launch")
            .skip(1)
            .map(|rest| {
                let name = rest
                    .split("pub fn ")
                    .nth(1)
                    .unwrap()
                    .split('(')
                    .next()
                    .unwrap();
                name.split('_')
                    .map(|w| w[..1].to_uppercase() + &w[1..])
                    .collect::<String>()
            })
            .collect();
        launched.sort();
        let script =
            std::fs::read_to_string(crate::root().join("xtask/scripts/kernel_times.awk")).unwrap();
        let list = script
            .split("name ~ /^(")
            .nth(1)
            .and_then(|rest| rest.split(")$/").next())
            .expect("the script's list of this crate's kernels");
        let mut marked: Vec<String> = list.split('|').map(String::from).collect();
        marked.sort();
        assert_eq!(marked, launched);
    }

    /// A 64-bit FNV-1a hash of `text`.
    fn fnv1a(text: &str) -> u64 {
        text.bytes().fold(0xcbf29ce484222325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    }

    /// One sample as `perf script -F comm,pid,tid,time,ip,sym` prints it, innermost frame first.
    fn sample(comm: &str, pid: u32, tid: u32, frames: &[&str]) -> String {
        let mut text = format!("{comm} {pid}/{tid} 100.000001: \n");
        for (i, frame) in frames.iter().enumerate() {
            text += &format!("\t    {:x} {frame}\n", 0x1000 + i);
        }
        text + "\n"
    }

    /// `n` copies of a sample.
    fn samples(n: usize, comm: &str, pid: u32, tid: u32, frames: &[&str]) -> String {
        sample(comm, pid, tid, frames).repeat(n)
    }

    /// One round of a variant's window in process 7: its main thread marked, then `work`
    /// samples of burn-fusion's thread at work, `spins` of it waiting, and 3 lavapipe shader
    /// samples on the runtime's thread.
    fn round(variant: &str, work: usize, spins: usize) -> String {
        let main = format!("T{variant}");
        samples(2, &main, 7, 7, &["burn_autodiff::graph::Graph::register"])
            + &samples(
                work,
                "DSU-100-0",
                7,
                9,
                &["burn_fusion::stream::Processor::process"],
            )
            + &samples(
                spins,
                "DSU-100-0",
                7,
                9,
                &["cubecl_common::device::handle::channel::ChannelDeviceHandle::submit_inner"],
            )
            + &samples(3, "DSD-4-0", 7, 8, &["[unknown]"])
            + &sample(
                "DSD-4-0",
                7,
                8,
                &["cubecl_wgpu::compute::stream::WgpuStream::enqueue_task"],
            )
            + &sample("idle", 7, 7, &["bench_qat_step::read_back"])
    }

    #[test]
    fn host_work_is_each_variants_median_round_of_non_waiting_samples() {
        // Before the windows: the bench's setup, and another process (cargo), are not counted.
        let mut text = samples(50, "bench_bert_step", 7, 7, &["quant::qat::calibrate"])
            + &samples(50, "cargo", 3, 3, &["cargo::ops::compile"])
            + &samples(
                50,
                "DSU-100-0",
                7,
                9,
                &["burn_fusion::search::Explorer::explore"],
            );
        // float's rounds do 4 / 40 / 8 samples of fusion work: the median round is the third.
        // The first W8A8 round explores (100), the others 10 and 12: its median round has 12.
        for (float, w8a8) in [(4, 100), (40, 10), (8, 12)] {
            text += &round("float", float, 5);
            text += &round("qat_w8a8", w8a8, 1);
        }
        let vars = ["labels=float,qat_w8a8", "steps=2", "period_ms=0.5"];
        let (ok, out, err) = awk_script("host_work.awk", &text, &vars);
        assert!(ok, "{err}\n{out}");
        let json: serde_json::Value = serde_json::from_str(
            out.lines()
                .find(|l| l.starts_with('{'))
                .unwrap_or_else(|| panic!("no JSON line in\n{out}")),
        )
        .unwrap();
        let variants = json["host_work"]["variants"].as_array().unwrap();
        let field = |v: usize, name: &str| variants[v][name].as_f64().unwrap();
        // Per step (2 steps a round), 0.5 ms a sample: float's median round, 8 fusion samples
        // (2 ms), 2 model samples (0.5 ms), 1 runtime sample (0.25 ms); its waits are the 5
        // spins (1.25 ms), its shaders the 3 unsymbolized runtime samples (0.75 ms).
        assert_eq!(variants[0]["name"], "float");
        assert_eq!(variants[0]["rounds"], 3);
        assert_eq!(field(0, "fusion_ms"), 2.0);
        assert_eq!(field(0, "model_ms"), 0.5);
        assert_eq!(field(0, "runtime_ms"), 0.25);
        assert_eq!(field(0, "host_ms"), 2.75);
        assert_eq!(field(0, "waits_ms"), 1.25);
        assert_eq!(field(0, "shaders_ms"), 0.75);
        assert_eq!(field(1, "fusion_ms"), 3.0);
        assert_eq!(field(1, "host_ms"), 3.75);
        let table = out
            .lines()
            .find(|l| l.starts_with("qat_w8a8"))
            .unwrap_or_else(|| panic!("no qat_w8a8 row in\n{out}"));
        assert!(table.contains("1.36x"), "{table}");
    }

    #[test]
    fn host_work_names_a_variant_with_no_window() {
        let text = round("float", 4, 0);
        let (ok, _, err) = awk_script("host_work.awk", &text, &["labels=float,qat_w8a8"]);
        assert!(!ok);
        assert!(err.contains("qat_w8a8"), "{err}");
    }
}
