//! LeNet-BN and the ResNet exported to the integer engine: round trip through the file, the
//! engine equal to the interpreter bit for bit (every kernel family of this CPU), and the
//! interpreter agreeing with the fake-quant model on real Fashion-MNIST images for every preset.

use burn::module::{Param, RunningState};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
mod common;

use common::{assert_parity, logits};
use engine::{Artifact, Engine, Interpreter, Isa};
use models::{LeNetConfig, ResNetConfig};
use quant::{ConvBn2d, QuantMapping};

/// The embedded test images, scaled to [0, 1] and standardised like the trainer does.
fn images(n: usize) -> Vec<f32> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/fashion-mnist-small"
    );
    let idx = data::read_idx(format!("{root}/t10k-images-idx3-ubyte.gz")).unwrap();
    idx.data[..n * 784]
        .iter()
        .map(|&p| (p as f32 / 255.0 - 0.286) / 0.353)
        .collect()
}

/// Batch-norm statistics and affine parameters far from the identity, so folding matters.
fn perturb_bn(layer: ConvBn2d, device: &Device) -> ConvBn2d {
    let c = layer.bn.gamma.dims()[0];
    let mut bn = layer.bn;
    let u = |lo, hi| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
    bn.running_mean = RunningState::new(u(-0.5, 0.5));
    bn.running_var = RunningState::new(u(0.3, 3.0));
    bn.gamma = Param::from_tensor(u(0.5, 1.5));
    bn.beta = Param::from_tensor(u(-0.3, 0.3));
    ConvBn2d { bn, ..layer }
}

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
    let x = images(n);
    let batch = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 1, 28, 28]), &device);
    for preset in ["w8a8", "w4a8", "w4a4", "w2a8"] {
        let mapping = QuantMapping::preset(preset).unwrap();
        let mut model = LeNetConfig::new().init(&device);
        model.conv1 = perturb_bn(model.conv1, &device);
        model.conv2 = perturb_bn(model.conv2, &device);
        let model = model.quantized(&mapping).unwrap();
        let model = quant::qat::calibrate(model, [batch.clone()], |m, b| {
            m.forward(b);
        });
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
    let x = images(n);
    let batch = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 1, 28, 28]), &device);
    for preset in ["w8a8", "w4a4"] {
        let config = ResNetConfig::new()
            .with_blocks_per_stage(1)
            .with_mapping(QuantMapping::preset(preset).unwrap());
        let mut model = config.init(&device);
        model.stem = perturb_bn(model.stem, &device);
        model.blocks = model
            .blocks
            .into_iter()
            .map(|mut b| {
                b.conv1 = perturb_bn(b.conv1, &device);
                b.conv2 = perturb_bn(b.conv2, &device);
                b.shortcut = b.shortcut.map(|s| perturb_bn(s, &device));
                b
            })
            .collect();
        let model = quant::qat::calibrate(model, [batch.clone()], |m, b| {
            m.forward(b);
        });
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
