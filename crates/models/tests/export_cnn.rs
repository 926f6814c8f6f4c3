//! LeNet-BN and the ResNet exported to the integer engine: round trip through the file, the
//! engine equal to the interpreter bit for bit (every kernel family of this CPU), and the
//! interpreter agreeing with the fake-quant model on real Fashion-MNIST images for every preset.

use burn::tensor::{Device, Tensor};
mod common;

use common::{assert_parity, calibrated_lenet, calibrated_resnet, image_batch, logits};
use engine::{Artifact, Engine, Interpreter, Isa};
use models::LeNetConfig;

/// Exports `model`, reloads it from bytes, and checks engine = interpreter ≈ fake-quant model.
fn check(name: &str, artifact: Artifact, fake: Tensor<2>, x: &[f32], n: usize) {
    let bytes = artifact.to_bytes();
    let artifact = Artifact::from_bytes(&bytes, name).unwrap();
    let reference = logits(&Interpreter::new(&artifact).unwrap().run(n, &[x]).unwrap());
    for isa in Isa::available() {
        let got = logits(
            &Engine::with_isa(&artifact, isa)
                .unwrap()
                .run(n, &[x])
                .unwrap(),
        );
        let same = got
            .iter()
            .zip(&reference)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{name}: engine ({}) differs from the interpreter",
            isa.name()
        );
    }
    let fake: Vec<f32> = fake.into_data().try_into_vec().unwrap();
    assert_parity(name, &fake, &reference, n, 99, 0.05);
}

#[test]
fn lenet_exports_for_every_preset_and_the_engine_reproduces_it() {
    let device = Device::flex();
    let n = 200;
    let (x, batch) = image_batch(n, &device);
    for preset in ["w8a8", "w4a8", "w4a4", "w2a8"] {
        let model = calibrated_lenet(preset, &batch, &device);
        let fake = model.forward(batch.clone());
        let artifact = model
            .to_artifact(serde_json::json!({ "preset": preset }))
            .unwrap();
        check(&format!("lenet {preset}"), artifact, fake, &x, n);
    }
}

#[test]
fn resnet_exports_and_the_engine_reproduces_it() {
    let device = Device::flex();
    let n = 64;
    let (x, batch) = image_batch(n, &device);
    for preset in ["w8a8", "w4a4"] {
        let model = calibrated_resnet(preset, &batch, &device);
        let fake = model.forward(batch.clone());
        let artifact = model.to_artifact(28, serde_json::json!({})).unwrap();
        check(&format!("resnet {preset}"), artifact, fake, &x, n);
    }
}

#[test]
fn a_float_model_cannot_be_exported_and_the_error_names_the_layer() {
    let model = LeNetConfig::new().init(&Device::flex());
    let err = model
        .to_artifact(serde_json::json!({}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input_quant") && err.contains("cannot export"),
        "{err}"
    );
}
