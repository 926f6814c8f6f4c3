//! The CNN training-step variants that `bench_qat_step` times and `tests/step_launches.rs` counts
//! launches of: float, QAT W8A8 and QAT W4A4 (LSQ) of one model, from the same float weights,
//! each calibrated once on the batch (as PTQ / QAT start does) and with its own AdamW; one step
//! is the trainer's own `TrainStep` (forward, backward) and the optimizer update. With
//! [`distilled`], QAT W4A4 with the float model as teacher (`qat.distillation`).
#![allow(dead_code)]

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use burn::train::TrainStep;
use data::{ImageBatch, ImageBatcher, read_idx_images};
use quant::QuantMapping;
use trainer::task::TaskNet;
use trainer::{ModelConfig, Net, Trainee};

/// One variant of the step (of a network `N`: the CNNs' `Net` unless said), and the times
/// measured for it.
pub struct Variant<N: TaskNet = Net> {
    pub name: &'static str,
    pub model: Option<Trainee<N>>,
    pub optim: ModuleOptimizer,
    pub samples_ms: Vec<f64>,
}

/// The first `batch_size` images of the embedded Fashion-MNIST subset, normalised as its
/// `dataset.json` says, on `device`.
pub fn embedded_batch(batch_size: usize, device: &Device) -> ImageBatch {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/fashion-mnist-small"
    );
    let data = read_idx_images(
        format!("{dir}/train-images-idx3-ubyte.gz"),
        format!("{dir}/train-labels-idx1-ubyte.gz"),
        10,
    )
    .expect("embedded subset");
    ImageBatcher::new(28, 28, (0.286, 0.353)).batch(data.items[..batch_size].to_vec(), device)
}

/// Float, QAT W8A8 and QAT W4A4 variants of `model` on `device` (with autodiff).
pub fn variants(model: &ModelConfig, batch: &ImageBatch, device: &Device) -> [Variant; 3] {
    let float = Net::init(model, 10, &QuantMapping::new(), device).unwrap();
    let quantized = |mapping| Trainee::new(twin(model, &float, mapping, batch, device), None);
    [
        variant("float", Trainee::new(float.clone(), None)),
        variant("qat_w8a8", quantized(QuantMapping::w8a8())),
        variant("qat_w4a4", quantized(QuantMapping::w4a4())),
    ]
}

/// QAT W4A4 of `model` distilling from its float model (weight 0.5, temperature 2): the
/// `qat_w4a4` variant plus the teacher's forward pass and the soft-target loss, from the same
/// float weights as [`variants`].
pub fn distilled(
    model: &ModelConfig,
    float: &Variant,
    batch: &ImageBatch,
    device: &Device,
) -> Variant {
    let float = float.model.as_ref().unwrap().net.clone();
    let student = twin(model, &float, QuantMapping::w4a4(), batch, device);
    let distillation = quant::qat::Distillation::new(0.5, 2.0).unwrap();
    variant(
        "qat_w4a4_kd",
        Trainee::new(student, None).with_teacher(float, distillation),
    )
}

/// `float`'s weights in a fresh `model` with `mapping`'s quantizers, calibrated on `batch` by one
/// forward pass (as PTQ / QAT start does).
fn twin(
    model: &ModelConfig,
    float: &Net,
    mapping: QuantMapping,
    batch: &ImageBatch,
    device: &Device,
) -> Net {
    let net = Net::init(model, 10, &QuantMapping::new(), device)
        .unwrap()
        .load_record(float.clone().into_record())
        .quantized(&mapping)
        .unwrap();
    net.forward(batch.images.clone());
    net
}

/// A variant timing `trainee`'s steps, with its own AdamW.
pub fn variant<N: TaskNet>(name: &'static str, trainee: Trainee<N>) -> Variant<N> {
    Variant {
        name,
        model: Some(trainee),
        optim: super::optimizer::adamw(1e-4),
        samples_ms: Vec::new(),
    }
}

/// The step's learning rate.
pub const LEARNING_RATE: f64 = 1e-4;

/// One training step of `v` on `batch`.
pub fn step<N: TaskNet>(v: &mut Variant<N>, batch: &N::Batch) {
    let model = v.model.take().unwrap();
    let output = TrainStep::step(&model, batch.clone());
    let model = model.optimize(&mut v.optim, LEARNING_RATE.into(), output.grads);
    v.model = Some(model);
}

/// Waits for `v`'s queued work by reading back its inference output on `batch` (what a training
/// loop's validation does between epochs). Burn-fusion's choices depend on what ran before: a
/// float LeNet-BN step counted right after training steps alone ran 14 launches more than one
/// after this read-back (132 vs 118 on wgpu), so the bench and the launch test both do it.
pub fn read_back(v: &Variant, batch: &ImageBatch) {
    let _ = v
        .model
        .as_ref()
        .unwrap()
        .valid()
        .net
        .forward(batch.images.clone().inner())
        .into_data();
}
