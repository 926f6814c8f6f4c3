//! Entropy calibration end to end on the embedded Fashion-MNIST subset: a scheme file whose
//! activations use `observer = { kind = "entropy" }` calibrates on Flex and on wgpu (the search
//! runs on the host either way), the saved model records the observer, and both devices score
//! the same within a point.
mod common;

use std::path::Path;

use common::*;

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    quick(
        "schemes=[\"w4a4\", \"configs/schemes/w4a4-entropy.toml\"]",
        "name=\"e\"",
        extra,
    )
}

/// The test accuracy of the run's PTQ row for `scheme`.
fn ptq_accuracy(runs: &Path, scheme: &str) -> f64 {
    let report = json(&runs.join("e/report.json"));
    report_row(&report, "ptq", scheme)["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn an_entropy_scheme_calibrates_on_flex_and_wgpu_alike() {
    let runs = temp_runs("entropy");
    run_ok(&runs, &args(&["train"]));
    run_ok(&runs, &args(&["ptq"]));
    let meta = json(&runs.join("e/ptq-w4a4-entropy/model.json"));
    assert_eq!(
        meta["mapping"]["activation"]["observer"]["kind"], "entropy",
        "{meta}"
    );
    let min_max = json(&runs.join("e/ptq-w4a4/model.json"));
    assert_ne!(
        min_max["mapping"]["activation"]["observer"]["kind"],
        "entropy"
    );
    let flex = ptq_accuracy(&runs, "W4A4-ENTROPY");
    run_ok(&runs, &args(&["--backend", "wgpu", "--fresh", "ptq"]));
    let wgpu = ptq_accuracy(&runs, "W4A4-ENTROPY");
    assert!(flex > 0.5, "entropy W4A4 PTQ accuracy {flex}");
    assert!((flex - wgpu).abs() <= 0.01, "flex {flex} vs wgpu {wgpu}");
}
