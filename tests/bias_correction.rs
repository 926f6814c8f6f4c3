//! `ptq.bias_correction` end to end on the embedded Fashion-MNIST subset: the trainer corrects
//! every LeNet layer's bias in forward order, writes the per-layer table, the corrected model
//! exports to an integer program that computes what it does, the correction brings the W4A4
//! logits closer to the float model's on data it never saw, and Flex and wgpu agree.
mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// LeNet's layers with a bias, in forward order (the conv layers' BN shift takes the correction).
const BIASES: [&str; 4] = ["conv1.bn.beta", "conv2.bn.beta", "fc1.bias", "fc2.bias"];

fn args<'a>(bias_correction: bool, extra: &[&'a str]) -> Vec<&'a str> {
    let correction = if bias_correction {
        "ptq.bias_correction=true"
    } else {
        "ptq.bias_correction=false"
    };
    quick(
        "schemes=[\"w4a4\"]",
        "name=\"b\"",
        &[&["--set", correction][..], extra].concat(),
    )
}

/// The `bias` of each corrected layer (paths as the mapping sees them: the trainer's `LeNet`
/// enum variant is not one of their segments).
fn biases(correction: &Value) -> Vec<String> {
    correction["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["bias"].as_str().unwrap().to_string())
        .collect()
}

/// The W4A4 logits' SQNR against the float model's on the validation split (images the
/// calibration and the correction never saw).
fn validation_sqnr(runs: &Path, bias_correction: bool) -> f64 {
    let sqnr = common::validation_sqnr(runs, &args(bias_correction, &[]), "b", "w4a4");
    let report = json(&runs.join("b/sensitivity-w4a4/report.json"));
    assert_eq!(report["bias_correction"], bias_correction);
    sqnr
}

#[test]
fn every_layer_is_corrected_in_order_exports_exactly_and_held_out_sqnr_improves() {
    let runs = temp_runs("bias-correction");
    run_ok(&runs, &args(true, &["train"]));
    let stdout = run_ok(&runs, &args(true, &["ptq"]));
    assert!(
        stdout.contains("[ptq W4A4] bias correction: 4/4 layers"),
        "{stdout}"
    );
    let dir = runs.join("b/ptq-w4a4");
    let correction = json(&dir.join("bias_correction.json"));
    assert_eq!(biases(&correction), BIASES);
    assert_eq!(correction["passes"], 5, "one pass per layer, plus one");
    for layer in correction["layers"].as_array().unwrap() {
        let before = layer["shift_db_before"].as_f64().unwrap();
        let after = layer["shift_db_after"].as_f64().unwrap();
        // On the calibration batches the corrected means match the float model's up to the
        // integer bias's rounding.
        assert!(after > before + 10.0, "{layer}");
    }
    let md = std::fs::read_to_string(dir.join("bias_correction.md")).unwrap();
    assert!(md.contains("| `fc2.bias` | 10 |"), "{md}");

    // The corrected model is an ordinary model: its integer export computes what it does.
    assert_ptq_exports_exactly(&runs, &args(true, &[]), "b", "W4A4");

    // On held-out images the corrected logits are closer to the float model's.
    let without = validation_sqnr(&runs, false);
    let with = validation_sqnr(&runs, true);
    assert!(
        with > without + 0.5,
        "W4A4 validation SQNR {without:.2} dB without, {with:.2} dB with bias correction"
    );
}

/// The correction on wgpu (Vulkan through lavapipe here) of the float model trained on Flex:
/// the same layers, corrected as far as on Flex.
#[test]
fn wgpu_corrects_as_flex_does() {
    let runs = temp_runs("bias-correction-wgpu");
    run_ok(&runs, &args(true, &["train"]));
    run_ok(&runs, &args(true, &["ptq"]));
    let flex = json(&runs.join("b/ptq-w4a4/bias_correction.json"));
    run_ok(&runs, &args(true, &["--backend", "wgpu", "--fresh", "ptq"]));
    let wgpu = json(&runs.join("b/ptq-w4a4/bias_correction.json"));
    assert_eq!(biases(&wgpu), biases(&flex));
    for (f, w) in flex["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(wgpu["layers"].as_array().unwrap())
    {
        let before = |l: &Value| l["shift_db_before"].as_f64().unwrap();
        assert!((before(f) - before(w)).abs() < 1.0, "{f}\n{w}");
        assert!(
            w["shift_db_after"].as_f64().unwrap() > before(w) + 10.0,
            "{w}"
        );
    }
}

/// On a token task (the committed 1-layer MiniLM NER fixture): every linear layer's bias is
/// corrected in forward order, counting the real tokens of the padded batches.
#[test]
fn a_token_task_corrects_every_linear_layer() {
    let runs = temp_runs("bias-correction-ner");
    let config = [
        "--no-tui",
        "--config",
        "configs/bert-ner-tiny.toml",
        "--set",
        "schemes=[\"w4a8\"]",
        "--set",
        "ptq.bias_correction=true",
    ];
    run_ok(&runs, &[&config[..], &["train"]].concat());
    let stdout = run_ok(&runs, &[&config[..], &["ptq"]].concat());
    assert!(stdout.contains("bias correction: 7/7 layers"), "{stdout}");
    let correction = json(&runs.join("bert-ner-tiny/ptq-w4a8/bias_correction.json"));
    let layer = |name: &str| format!("bert.encoder.layer.0.{name}.bias");
    let expected = [
        layer("attention.self_attention.query"),
        layer("attention.self_attention.key"),
        layer("attention.self_attention.value"),
        layer("attention.output.dense"),
        layer("intermediate.dense"),
        layer("output.dense"),
        "classifier.bias".to_string(),
    ];
    assert_eq!(biases(&correction), expected);
    for layer in correction["layers"].as_array().unwrap() {
        let before = layer["shift_db_before"].as_f64().unwrap();
        let after = layer["shift_db_after"].as_f64().unwrap();
        assert!(after > before, "{layer}");
    }
}
