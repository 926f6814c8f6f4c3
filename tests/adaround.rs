//! `ptq.adaround` end to end on the embedded Fashion-MNIST subset: the trainer learns the
//! rounding of every LeNet weight in forward order, writes the per-layer table, each layer's
//! output error falls below nearest rounding's, the rounded model exports to an integer program
//! that computes what it does, the learned rounding brings the 2-bit logits closer to the float
//! model's on data it never saw, and wgpu learns it as Flex does.
mod common;

use common::*;
use serde_json::Value;

/// LeNet's quantized weights, in forward order (a conv's quantizer rounds its BN-folded weight,
/// which the rounding is written back through).
const WEIGHTS: [&str; 4] = [
    "conv1.conv.weight",
    "conv2.conv.weight",
    "fc1.weight",
    "fc2.weight",
];

/// The quick run of W2A8 (where nearest rounding loses the most), with AdaRound's 100 steps a
/// layer (at ten times the default step size, to decide in a tenth of the steps) or without it.
fn args<'a>(adaround: bool, extra: &[&'a str]) -> Vec<&'a str> {
    let rounding: &[&str] = if adaround {
        &["--set", "ptq.adaround={iterations=100, lr=0.1}"]
    } else {
        &[]
    };
    quick(
        "schemes=[\"w2a8\"]",
        "name=\"a\"",
        &[rounding, extra].concat(),
    )
}

fn weights(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["weight"].as_str().unwrap().to_string())
        .collect()
}

/// Every layer's output error on the calibration batches fell at least 10% below nearest
/// rounding's, and the layer kept its learned rounding.
fn assert_errors_fell(report: &Value) {
    for layer in report["layers"].as_array().unwrap() {
        let nearest = layer["error_nearest"].as_f64().unwrap();
        let learned = layer["error_learned"].as_f64().unwrap();
        assert!(learned < 0.9 * nearest, "{layer}");
        let flipped = layer["flipped"].as_f64().unwrap();
        assert!(flipped > 0.0 && flipped < 0.5, "{layer}");
        assert_eq!(layer["kept_nearest"], false, "{layer}");
    }
}

#[test]
fn every_weight_is_rounded_in_order_exports_exactly_and_held_out_sqnr_improves() {
    let runs = temp_runs("adaround");
    run_ok(&runs, &args(true, &["train"]));
    let stdout = run_ok(&runs, &args(true, &["ptq"]));
    assert!(
        stdout.contains("[ptq W2A8] adaround: 4/4 layers"),
        "{stdout}"
    );
    let dir = runs.join("a/ptq-w2a8");
    let report = json(&dir.join("adaround.json"));
    assert_eq!(weights(&report), WEIGHTS);
    assert_eq!(report["iterations"], 100);
    assert_errors_fell(&report);
    let md = std::fs::read_to_string(dir.join("adaround.md")).unwrap();
    assert!(md.contains("| `fc2.weight` | 1280 |"), "{md}");

    // The rounded model is an ordinary model: its integer export computes what it does.
    assert_ptq_exports_exactly(&runs, &args(true, &[]), "a", "W2A8");

    // On held-out images the learned rounding's logits are closer to the float model's.
    let without = validation_sqnr(&runs, &args(false, &[]), "a", "w2a8");
    let with = validation_sqnr(&runs, &args(true, &[]), "a", "w2a8");
    assert!(
        with > without + 1.0,
        "W2A8 validation SQNR {without:.2} dB with nearest rounding, {with:.2} dB with AdaRound"
    );
}

/// AdaRound on wgpu (Vulkan through lavapipe here) from the float model trained on Flex: the
/// same layers, each layer's error lowered as on Flex (the rounding variables' autodiff runs
/// through wgpu's fused fake-quant kernels).
#[test]
fn wgpu_rounds_as_flex_does() {
    let runs = temp_runs("adaround-wgpu");
    run_ok(&runs, &args(true, &["train"]));
    run_ok(&runs, &args(true, &["ptq"]));
    let flex = json(&runs.join("a/ptq-w2a8/adaround.json"));
    run_ok(&runs, &args(true, &["--backend", "wgpu", "--fresh", "ptq"]));
    let wgpu = json(&runs.join("a/ptq-w2a8/adaround.json"));
    assert_eq!(weights(&wgpu), weights(&flex));
    assert_errors_fell(&wgpu);
    for (f, w) in flex["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(wgpu["layers"].as_array().unwrap())
    {
        let nearest = |l: &Value| l["error_nearest"].as_f64().unwrap();
        // The first layer sees the same input on both devices; later ones follow the rounding
        // learned before them, which the devices' float sums may have tipped differently.
        if f["weight"] == WEIGHTS[0] {
            assert!((nearest(f) / nearest(w) - 1.0).abs() < 0.01, "{f}\n{w}");
        }
    }
}
