//! `qat.distillation` end to end on the embedded Fashion-MNIST subset: the QAT loss becomes the
//! float teacher's soft-target term (so with `weight = 1` it starts near zero, far below the
//! labels' cross-entropy: the PTQ start already nearly matches the teacher), the run's config
//! records it, and wgpu distils as Flex does.
mod common;

use std::path::Path;

use common::*;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    quick("schemes=[\"w4a4\"]", "name=\"d\"", extra)
}

const TEACHER_ONLY: [&str; 4] = [
    "--set",
    "qat.distillation.weight=1.0",
    "--set",
    "qat.distillation.temperature=1.0",
];

/// The mean training loss of the QAT stage's first epoch, as burn-train logged it.
fn first_epoch_loss(runs: &Path) -> f64 {
    let log = std::fs::read_to_string(runs.join("d/qat-w4a4/train/epoch-1/Loss.log")).unwrap();
    let values: Vec<f64> = log
        .lines()
        .map(|line| line.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(!values.is_empty());
    values.iter().sum::<f64>() / values.len() as f64
}

#[test]
fn the_qat_loss_becomes_the_teachers_and_wgpu_agrees() {
    let runs = temp_runs("distillation");
    run_ok(&runs, &args(&["train"]));

    let stdout = run_ok(&runs, &args(&["qat"]));
    assert!(!stdout.contains("distilling"), "{stdout}");
    let labels = first_epoch_loss(&runs);

    let stdout = run_ok(
        &runs,
        &args(&[&TEACHER_ONLY[..], &["--fresh", "qat"]].concat()),
    );
    assert!(
        stdout.contains("distilling from the float model: loss = 0.00 · task + 1.00 · soft targets at temperature 1"),
        "{stdout}"
    );
    let teacher = first_epoch_loss(&runs);
    assert!(
        teacher < 0.5 * labels,
        "soft-target loss {teacher} vs cross-entropy {labels}"
    );
    assert!(teacher > 0.0);
    let config = std::fs::read_to_string(runs.join("d/config.toml")).unwrap();
    assert!(config.contains("[qat.distillation]"), "{config}");

    let stdout = run_ok(
        &runs,
        &args(&[&TEACHER_ONLY[..], &["--backend", "wgpu", "--fresh", "qat"]].concat()),
    );
    assert!(
        stdout.contains("distilling from the float model"),
        "{stdout}"
    );
    let wgpu = first_epoch_loss(&runs);
    eprintln!(
        "first QAT epoch's loss: labels {labels:.4}, teacher on flex {teacher:.4}, on wgpu {wgpu:.4}"
    );
    assert!(
        (wgpu - teacher).abs() < 0.25 * teacher,
        "wgpu {wgpu} vs flex {teacher}"
    );
}
