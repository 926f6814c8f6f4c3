//! Helpers for the end-to-end tests: run the `trainer` binary from the workspace root on the
//! embedded Fashion-MNIST subset, with its outputs in a fresh temporary folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (relative dataset paths in configs resolve from here).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh, empty folder for one test's runs.
pub fn temp_runs(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trainer-e2e-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The trainer command, run from the workspace root, writing into `runs`.
pub fn trainer(runs: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .current_dir(root())
        .arg("--set")
        .arg(format!("runs_dir=\"{}\"", runs.display()))
        .args(args);
    command.env_remove("RUST_BACKTRACE");
    command
}

/// Runs the trainer to completion.
pub fn run(runs: &Path, args: &[&str]) -> Output {
    trainer(runs, args).output().expect("trainer binary runs")
}

/// Runs the trainer, asserts it succeeded (with its output in the message), returns stdout.
pub fn run_ok(runs: &Path, args: &[&str]) -> String {
    let output = run(runs, args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{args:?}:\n{stdout}\n{stderr}");
    stdout
}

/// A JSON file the trainer wrote (report, meta, correction table), parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The row of `report` (a run's `report.json`) for `variant` (`float`, `ptq`, `qat`, `int`) and
/// `scheme` (its display name, e.g. `W4A4`).
pub fn report_row<'a>(
    report: &'a serde_json::Value,
    variant: &str,
    scheme: &str,
) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["variant"] == variant && r["scheme"] == scheme)
        .unwrap_or_else(|| panic!("no {variant} {scheme} row in {report}"))
}

/// [`QUICK`] with `schemes` and `name` assignments (`schemes=[…]`, `name="…"`), then `extra`.
pub fn quick<'a>(schemes: &'a str, name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = QUICK.to_vec();
    all.extend(["--set", schemes, "--set", name]);
    all.extend(extra);
    all
}

/// `export`s the run `args` (whose `name` is `name`) and asserts that the integer engine agrees
/// with the fake-quant `ptq` model of `scheme` (its display name, e.g. `W4A4`) on at least 99% of
/// the test set: a pass that rewrote the PTQ model left an ordinary model behind.
pub fn assert_ptq_exports_exactly(runs: &Path, args: &[&str], name: &str, scheme: &str) {
    run_ok(runs, &[args, &["export"]].concat());
    let report = json(&runs.join(name).join("report.json"));
    let int = report_row(&report, "int", scheme);
    let deployment = &int["deployment"];
    assert_eq!(deployment["source"], "ptq", "{deployment}");
    let agreement = deployment["parity"]["agreement"].as_f64().unwrap();
    assert!(
        agreement >= 0.99,
        "engine vs fake-quant agreement {agreement}: {deployment}"
    );
}

/// The logits' SQNR of `scheme` (its preset name, e.g. `w4a4`) against the float model's on the
/// validation split (images that calibration never saw), from `sensitivity` on one unit of the
/// run `args` named `name`.
pub fn validation_sqnr(runs: &Path, args: &[&str], name: &str, scheme: &str) -> f64 {
    let extra = [
        "sensitivity",
        "--fresh",
        "--scheme",
        scheme,
        "--layers",
        "^fc2$",
        "--top",
        "1",
    ];
    run_ok(runs, &[args, &extra].concat());
    let dir = runs.join(name).join(format!("sensitivity-{scheme}"));
    json(&dir.join("report.json"))["quantized"]["sqnr_db"]
        .as_f64()
        .unwrap()
}

/// Settings that keep a run to a few seconds on a CPU: one epoch of each stage (whose BN and
/// observer freeze then apply from its start: a milestone past the stage is an error).
pub const QUICK: [&str; 12] = [
    "--no-tui",
    "--set",
    "train.epochs=1",
    "--set",
    "qat.epochs=1",
    "--set",
    "qat.observer_freeze_epoch=0",
    "--set",
    "qat.bn_freeze_epoch=0",
    "--set",
    "ptq.calibration_batches=2",
    "--set=data.num_workers=1",
];

/// stdout and stderr as text, for assertion messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
