//! What the export tests share: the logits an artifact returns, and the check that they are the
//! fake-quant model's.
#![allow(dead_code)]

use burn::module::{Param, RunningState};
use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};
use engine::Value;
use models::{LeNet, LeNetConfig, LstmClassifier, LstmClassifierConfig, ResNet, ResNetConfig};
use quant::{ConvBn2d, QuantMapping};

/// The float logits an artifact's first output holds.
pub fn logits(values: &[Value]) -> Vec<f32> {
    match &values[0] {
        Value::Float(v) => v.clone(),
        Value::Codes(_) => panic!("logits are float"),
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

/// Asserts the engine's `reference` logits are the fake-quant model's `fake` for `n` items: the
/// same prediction on at least `agree_percent`% of them, and no logit further off than
/// `gap_share` of the largest logit.
pub fn assert_parity(
    name: &str,
    fake: &[f32],
    reference: &[f32],
    n: usize,
    agree_percent: usize,
    gap_share: f32,
) {
    let classes = fake.len() / n;
    let agree = (0..n)
        .filter(|&i| {
            argmax(&fake[i * classes..][..classes]) == argmax(&reference[i * classes..][..classes])
        })
        .count();
    let span = fake.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gap = fake
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{name}: {agree}/{n} predictions agree, max |Δlogit| {gap:.2e} (logits up to {span:.2})"
    );
    assert!(
        agree * 100 >= n * agree_percent,
        "{name}: only {agree}/{n} predictions agree"
    );
    assert!(
        gap <= gap_share * span,
        "{name}: logits differ by {gap} (span {span})"
    );
}

/// How many of the `n` items have some logit further than `tolerance` from the fake-quant
/// model's: the items whose integer program took a different rounding somewhere.
pub fn items_off(fake: &[f32], reference: &[f32], n: usize, tolerance: f32) -> usize {
    let classes = fake.len() / n;
    (0..n)
        .filter(|&i| {
            fake[i * classes..][..classes]
                .iter()
                .zip(&reference[i * classes..][..classes])
                .any(|(a, b)| (a - b).abs() > tolerance)
        })
        .count()
}

/// The embedded test images, scaled to [0, 1] and standardised like the trainer does.
pub fn images(n: usize) -> Vec<f32> {
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

/// The first `n` embedded test images as the engine takes them and as a batch `[n, 1, 28, 28]`.
pub fn image_batch(n: usize, device: &Device) -> (Vec<f32>, Tensor<4>) {
    let x = images(n);
    let batch = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 1, 28, 28]), device);
    (x, batch)
}

/// Batch-norm statistics and affine parameters far from the identity, so folding matters.
pub fn perturb_bn(layer: ConvBn2d, device: &Device) -> ConvBn2d {
    let c = layer.bn.gamma.dims()[0];
    let mut bn = layer.bn;
    let u = |lo, hi| Tensor::<1>::random([c], Distribution::Uniform(lo, hi), device);
    bn.running_mean = RunningState::new(u(-0.5, 0.5));
    bn.running_var = RunningState::new(u(0.3, 3.0));
    bn.gamma = Param::from_tensor(u(0.5, 1.5));
    bn.beta = Param::from_tensor(u(-0.3, 0.3));
    ConvBn2d { bn, ..layer }
}

/// The first `n` test utterances, padded to the longest: frames `[n, time, 12]` (each feature
/// standardised over these frames), the mask `[n, time]` as 0/1, and `time`.
pub fn utterances(n: usize) -> (Vec<f32>, Vec<f32>, usize) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/japanese-vowels/JapaneseVowels_TEST.ts"
    );
    let file = data::read_ts(std::path::Path::new(path)).unwrap();
    let sequences = &file.sequences[..n];
    let time = sequences.iter().map(|s| s.len).max().unwrap();
    let dims = file.dims;
    let all: Vec<f32> = sequences.iter().flat_map(|s| s.frames.clone()).collect();
    let frames_total = all.len() / dims;
    let stats: Vec<(f32, f32)> = (0..dims)
        .map(|d| {
            let column = all.iter().skip(d).step_by(dims);
            let mean = column.clone().sum::<f32>() / frames_total as f32;
            let var = column.map(|x| (x - mean).powi(2)).sum::<f32>() / frames_total as f32;
            (mean, var.sqrt())
        })
        .collect();
    let (mut frames, mut mask) = (vec![0f32; n * time * dims], vec![0f32; n * time]);
    for (b, s) in sequences.iter().enumerate() {
        for (k, x) in s.frames.iter().enumerate() {
            let (mean, std) = stats[k % dims];
            frames[b * time * dims + k] = (x - mean) / std;
        }
        mask[b * time..b * time + s.len].fill(1.0);
    }
    (frames, mask, time)
}

/// W4A4 with every cell state on a 16-bit grid (TFLite's integer LSTM keeps it so).
pub fn cell16() -> QuantMapping {
    let mut mapping = QuantMapping::w4a4();
    let mut cell = QuantMapping::w8a8().activation.unwrap();
    cell.spec.bits = 16;
    mapping.rules.push(quant::QuantRule {
        pattern: Some(r"\.cell_quant$".into()),
        layer: None,
        rank: None,
        weight: None,
        activation: Some(cell),
        float: false,
    });
    mapping
}

/// LeNet-BN quantized with `preset`, its batch norms far from the identity, calibrated on `batch`.
pub fn calibrated_lenet(preset: &str, batch: &Tensor<4>, device: &Device) -> LeNet {
    let mut model = LeNetConfig::new().init(device);
    model.conv1 = perturb_bn(model.conv1, device);
    model.conv2 = perturb_bn(model.conv2, device);
    let model = model
        .quantized(&QuantMapping::preset(preset).unwrap())
        .unwrap();
    quant::qat::calibrate(model, [batch.clone()], |m, b| {
        m.forward(b);
    })
}

/// A one-block-a-stage ResNet quantized with `preset`, every batch norm far from the identity,
/// calibrated on `batch`.
pub fn calibrated_resnet(preset: &str, batch: &Tensor<4>, device: &Device) -> ResNet {
    let config = ResNetConfig::new()
        .with_blocks_per_stage(1)
        .with_mapping(QuantMapping::preset(preset).unwrap());
    let mut model = config.init(device);
    model.stem = perturb_bn(model.stem, device);
    model.blocks = model
        .blocks
        .into_iter()
        .map(|mut b| {
            b.conv1 = perturb_bn(b.conv1, device);
            b.conv2 = perturb_bn(b.conv2, device);
            b.shortcut = b.shortcut.map(|s| perturb_bn(s, device));
            b
        })
        .collect();
    quant::qat::calibrate(model, [batch.clone()], |m, b| {
        m.forward(b);
    })
}

/// `frames` and `mask` of [`utterances`] as the model's tensors: `[n, time, 12]` and `[n, time]`.
pub fn sequence_batch(
    frames: &[f32],
    mask: &[f32],
    n: usize,
    time: usize,
    device: &Device,
) -> (Tensor<3>, Tensor<2, Bool>) {
    let x = Tensor::<3>::from_data(TensorData::new(frames.to_vec(), [n, time, 12]), device);
    let keep = Tensor::<2, Bool>::from_data(
        TensorData::new(mask.iter().map(|&m| m > 0.0).collect::<Vec<_>>(), [n, time]),
        device,
    );
    (x, keep)
}

/// A 2-layer LSTM classifier (12 features, 24 hidden, 9 classes) quantized with `mapping` and
/// calibrated on `x` / `keep`: every frame is one observation of a moving-average observer, so
/// a few passes settle them.
pub fn calibrated_lstm(
    mapping: QuantMapping,
    x: &Tensor<3>,
    keep: &Tensor<2, Bool>,
    device: &Device,
) -> LstmClassifier {
    let model = LstmClassifierConfig::new(12, 9)
        .with_d_hidden(24)
        .with_layers(2)
        .with_mapping(mapping)
        .init(device);
    let passes = std::iter::repeat_n((x.clone(), keep.clone()), 20);
    quant::qat::calibrate(model, passes, |m, (x, k)| {
        m.forward(x, &k);
    })
}
