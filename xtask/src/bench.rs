//! `cargo xtask bench <name>`: runs a benchmark binary with the workspace's optimised build.

use std::process::Command;

use anyhow::{Result, bail};

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("fake-quant") => {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "run",
                "--quiet",
                "-p",
                "quant",
                "--example",
                "bench_fake_quant",
                "--",
            ]);
            cmd.args(&args[1..]);
            crate::run_command(cmd)
        }
        Some("qat-step") => {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "run",
                "--quiet",
                "-p",
                "trainer",
                "--example",
                "bench_qat_step",
                "--",
            ]);
            cmd.args(&args[1..]);
            crate::run_command(cmd)
        }
        Some("integrity") => {
            let mut cmd = Command::new(env!("CARGO"));
            cmd.args([
                "run",
                "--quiet",
                "-p",
                "trainer",
                "--example",
                "bench_integrity",
                "--",
            ]);
            cmd.args(&args[1..]);
            crate::run_command(cmd)
        }
        Some(other) => {
            bail!("unknown benchmark `{other}`; available: fake-quant, qat-step, integrity")
        }
        None => bail!("name a benchmark: fake-quant, qat-step, integrity"),
    }
}
