//! Your own Burn model through the QAT workflow, without a single quant type in its definition:
//! prepare → calibrate → QAT → report, on the UCI digits (shipped in the repository).
//!
//! ```sh
//! cargo run --release -p quant --example custom_model
//! ```
//!
//! The model is stock `burn::nn`, so the scheme is weight-only (W2, LSQ steps initialised by MSE
//! search): Burn has no forward hooks, so activation quantizers are placed in `forward` with the
//! crate's layers and ops (`QuantStub`, `QuantLinear`, …) — `qat::prepare` says so rather than
//! silently dropping the activation half of a W*A* scheme.
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use data::{ImageDataset, read_digits_csv, split_every_kth};
use quant::QuantMapping;
use quant::qat::{self, QatSchedule};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The user's model: nothing but `burn::nn`.
#[derive(Module, Debug)]
struct UserMlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl UserMlp {
    fn new(device: &Device) -> Self {
        UserMlp {
            fc1: LinearConfig::new(64, 128).init(device),
            fc2: LinearConfig::new(128, 64).init(device),
            fc3: LinearConfig::new(64, 10).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc3
            .forward(relu(self.fc2.forward(relu(self.fc1.forward(x)))))
    }
}

/// Batches of `(pixels, labels)` from the digits, 32 at a time.
fn batches(data: &ImageDataset, device: &Device) -> Vec<(Tensor<2>, Tensor<1, Int>)> {
    data.items
        .chunks(32)
        .map(|items| {
            let pixels: Vec<f32> = items
                .iter()
                .flat_map(|i| i.pixels.iter().copied())
                .collect();
            let labels: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
            (
                Tensor::from_data(TensorData::new(pixels, [items.len(), 64]), device),
                Tensor::from_data(TensorData::new(labels, [items.len()]), device),
            )
        })
        .collect()
}

/// `epochs` of AdamW; the quantizers' learned steps (if any) in their own group without weight
/// decay, and the QAT schedule applied after every optimizer step.
fn train(
    mut model: UserMlp,
    data: &[(Tensor<2>, Tensor<1, Int>)],
    epochs: usize,
    lr: f64,
    schedule: Option<&QatSchedule>,
) -> UserMlp {
    let mut optim = ModuleOptimizer::from(AdamWConfig::new().with_weight_decay(1e-4).build())
        .with_group(
            qat::quantizer_params(&model),
            AdamConfig::new().build(),
            None,
        );
    let loss = CrossEntropyLossConfig::new().init(&data[0].0.device());
    for _ in 0..epochs {
        for (x, y) in data {
            let grads = loss.forward(model.forward(x.clone()), y.clone()).backward();
            let grads = GradientsParams::from_grads(grads, &model);
            model = optim.step(lr, model, grads);
            if let Some(schedule) = schedule {
                model = schedule.apply(model);
            }
        }
    }
    model
}

fn accuracy(model: &UserMlp, data: &[(Tensor<2>, Tensor<1, Int>)]) -> f64 {
    let (mut correct, mut total) = (0i64, 0usize);
    for (x, y) in data {
        let predicted = model.forward(x.clone()).argmax(1).reshape([y.dims()[0]]);
        correct += predicted.equal(y.clone()).int().sum().into_scalar::<i64>();
        total += y.dims()[0];
    }
    100.0 * correct as f64 / total as f64
}

fn main() -> Result<(), quant::QuantError> {
    let device = Device::flex();
    device.seed(7);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/embedded/digits/digits.csv.gz"
    );
    let (train_set, test_set) = split_every_kth(read_digits_csv(path).expect("shipped"), 5, 0);
    let autodiff = device.clone().autodiff();
    let (train_batches, test_batches) =
        (batches(&train_set, &autodiff), batches(&test_set, &device));

    // 1. The float model, trained as usual.
    let float = train(UserMlp::new(&autodiff), &train_batches, 8, 2e-3, None);

    // 2. Prepare: a weight quantizer on every Linear weight, by path (here: 2-bit LSQ, MSE-initialised).
    let mapping = QuantMapping::w2a8().weights_only();
    let (model, report) = qat::prepare(float.clone(), &mapping)?;
    println!(
        "prepared {} weights: {:?}",
        report.weights.len(),
        report.weights.iter().map(|w| &w.path).collect::<Vec<_>>()
    );

    // 3. Calibrate: observers on, fake quantization off, over a few batches (PTQ).
    let ptq = qat::calibrate(model.valid(), test_batches.iter().take(4), |m, (x, _)| {
        m.forward(x.clone());
    });

    // 4. QAT: fine-tune with the schedule (observers frozen after the first epoch).
    let schedule = QatSchedule::new(train_batches.len()).with_observer_freeze_epoch(Some(1));
    schedule.validate(4)?;
    let qat_model = train(
        schedule.restore(model),
        &train_batches,
        4,
        5e-4,
        Some(&schedule),
    );

    // 5. Report: accuracy and deployed size.
    let rows = [
        (
            "float",
            accuracy(&float.valid(), &test_batches),
            qat::storage_bytes(&float),
        ),
        (
            "PTQ W2",
            accuracy(&ptq, &test_batches),
            qat::storage_bytes(&ptq),
        ),
        (
            "QAT W2",
            accuracy(&qat_model.valid(), &test_batches),
            qat::storage_bytes(&qat_model),
        ),
    ];
    println!("\n| model | accuracy | size |\n|---|---|---|");
    for (name, acc, bytes) in rows {
        println!("| {name} | {acc:.2}% | {:.1} KiB |", bytes as f64 / 1024.0);
    }
    Ok(())
}
