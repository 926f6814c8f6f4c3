//! `cargo xtask bench <name>`: runs a benchmark binary with the workspace's optimised build.

use std::process::Command;

use anyhow::{Result, bail};

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
    cmd.args(["run", "--quiet", "-p", package, "--example", example, "--"]);
    cmd.args(&args[1..]);
    crate::run_command(cmd)
}
