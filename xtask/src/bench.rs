//! `cargo xtask bench <name>`: runs a benchmark binary with the workspace's optimised build.
//! `bench bert-step --kernel-times` (or `qat-step`) runs it under CubeCL's profiler and prints
//! where each variant's kernel time goes (`xtask/scripts/kernel_times.awk`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Benchmark name → (package, example binary).
const BENCHES: &[(&str, &str, &str)] = &[
    ("fake-quant", "quant", "bench_fake_quant"),
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
    if args.iter().any(|a| a == KERNEL_TIMES) {
        let Some((_, variants, windows, extra)) = PROFILED.iter().find(|b| b.0 == name) else {
            bail!(
                "{KERNEL_TIMES} is for bert-step and qat-step, whose device syncs delimit their variants"
            );
        };
        return kernel_times(cmd, &args[1..], (variants, windows), extra);
    }
    cmd.args(&args[1..]);
    crate::run_command(cmd)
}

/// The flag that runs a bench under CubeCL's profiler.
const KERNEL_TIMES: &str = "--kernel-times";

/// The benches `--kernel-times` profiles: name → (their variants in the order they run; the
/// profiler's tables, one per device sync, that hold each variant's steps in round 1: those
/// whose kernels the bench's launch table counts; flags added to the run).
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
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map_or("flex", String::as_str);
    if args.iter().any(|a| a == "--rounds") {
        bail!("{KERNEL_TIMES} runs one round: the profiler's tables it reads are round 1's");
    }
    if matches!(backend, "flex" | "ndarray") {
        bail!(
            "{KERNEL_TIMES} profiles CubeCL kernels, which the {backend} backend does not run: add --backend wgpu (or vulkan, metal, cuda)"
        );
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
    let mut rest = args.iter().filter(|a| *a != KERNEL_TIMES);
    while let Some(a) = rest.next() {
        cmd.arg(a);
        if a == "--checkpoint"
            && let Some(dir) = rest.next()
        {
            cmd.arg(crate::root().join(dir));
        }
    }
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
    let script = crate::root().join("xtask/scripts/kernel_times.awk");
    let mut awk = Command::new("awk");
    awk.arg("-v")
        .arg(format!("labels={variants}"))
        .arg("-v")
        .arg(format!("windows={windows}"))
        .arg("-f")
        .arg(&script)
        .arg(&log);
    crate::run_command_in(awk, Path::new("."))?;
    println!("(profile log: {})", log.display());
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
        let dir = std::env::temp_dir().join(format!("kernel-times-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.log", log.len()));
        std::fs::write(&path, log).unwrap();
        let mut awk = Command::new("awk");
        for var in vars {
            awk.args(["-v", var]);
        }
        let out = awk
            .arg("-f")
            .arg(crate::root().join("xtask/scripts/kernel_times.awk"))
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
    /// (`#[cube(launch)]` in its kernels file, CubeCL naming them in CamelCase) and no other.
    #[test]
    fn the_summary_knows_every_kernel_of_the_quant_crate() {
        let kernels = std::fs::read_to_string(
            crate::root().join("crates/quant/src/math/fused/cube/kernels.rs"),
        )
        .unwrap();
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
}
