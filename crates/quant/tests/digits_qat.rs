//! End to end on real data: an MLP on the UCI digits, float → PTQ → W4A8 QAT, on every device.
mod common;
#[path = "../examples/digits/mlp.rs"]
#[allow(dead_code)]
mod mlp;

use quant::QuantMapping;

/// What QAT must reach on the 360 held-out digits.
const MIN_QAT_ACCURACY: f64 = 0.95;
/// Flex and wgpu initialise and reduce differently; their accuracies agree within this.
const DEVICE_AGREEMENT: f64 = 0.03;

#[test]
fn w4a8_qat_mlp_reaches_95_percent_on_digits() {
    let mut results = Vec::new();
    for (name, device) in common::devices() {
        let r = mlp::float_ptq_qat(&QuantMapping::w4a8(), &device, 20, 6);
        println!(
            "{name}: float {:.4} ptq {:.4} qat {:.4}",
            r.float, r.ptq, r.qat
        );
        assert!(
            r.qat >= MIN_QAT_ACCURACY,
            "{name}: W4A8 QAT accuracy {:.4} < {MIN_QAT_ACCURACY}",
            r.qat
        );
        assert!(
            r.qat >= r.float - 0.02,
            "{name}: QAT {:.4} far below float {:.4}",
            r.qat,
            r.float
        );
        results.push(r.qat);
    }
    let spread = results.iter().cloned().fold(f64::MIN, f64::max)
        - results.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread <= DEVICE_AGREEMENT,
        "devices disagree by {spread:.4}: {results:?}"
    );
}
