//! Benchmark: one QAT training step (forward, backward, AdamW; the trainer's own `TrainStep`) of
//! LeNet-BN (or, with `--model resnet`, ResNet-20) on a real Fashion-MNIST batch, float vs QAT W8A8
//! vs QAT W4A4 (LSQ), side by side.
//!
//! Run through `cargo xtask bench qat-step [--model lenet|resnet] [--backend B] [--batch N] [--rounds R] [--steps K]`.
//! Variants are timed in alternating rounds (machine noise hits all alike) and compared by their
//! medians. On a GPU backend it also counts each variant's kernel launches in one step (a figure
//! that does not depend on the machine); `QUANT_FUSED=off` runs the composite ops instead of the
//! fused kernels, to see what they buy; `QAT_LAUNCHES_BY_KERNEL=1` lists launches by kernel.
//! Prints tables and, as its last line, one JSON object.

/// The allocator the trainer uses (see `crates/trainer/src/main.rs` for why), so the bench
/// measures what training runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use burn::data::dataloader::batcher::Batcher;
#[path = "common/bench_args.rs"]
mod bench_args;
#[path = "common/launch_table.rs"]
mod launch_table;

use bench_args::{arg, median, number};
use burn::module::Module;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::train::TrainStep;
use data::{ImageBatch, ImageBatcher, read_idx_images};
use quant::QuantMapping;
use trainer::{ModelConfig, Net, Trainee, select_device};

struct Variant {
    name: &'static str,
    model: Option<Trainee<Net>>,
    optim: ModuleOptimizer,
    samples_ms: Vec<f64>,
}

fn main() {
    trainer::allocator::keep_freed_memory();
    let backend = arg("--backend", "flex");
    let (batch_size, rounds, steps) = (
        number("--batch", 128),
        number("--rounds", 7),
        number("--steps", 10),
    );
    let device = select_device(&backend).unwrap_or_else(|e| panic!("{e}"));
    let autodiff = device.clone().autodiff();
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
    // Fashion-MNIST's normalisation (its `dataset.json`).
    let batcher = ImageBatcher::new(28, 28, (0.286, 0.353));
    let batch: ImageBatch = batcher.batch(data.items[..batch_size].to_vec(), &autodiff);
    let model_name = arg("--model", "lenet");
    let model = match model_name.as_str() {
        "resnet" => ModelConfig::Resnet {
            blocks_per_stage: 3,
            channels: [16, 32, 64],
        },
        _ => ModelConfig::LenetBn {
            channels: [16, 32],
            hidden: 128,
        },
    };

    let float = Net::init(&model, 10, &QuantMapping::new(), &autodiff).unwrap();
    let make = |name, mapping: Option<QuantMapping>| {
        let net = match mapping {
            None => float.clone(),
            Some(m) => {
                let net = Net::init(&model, 10, &QuantMapping::new(), &autodiff)
                    .unwrap()
                    .load_record(float.clone().into_record());
                let net = net.quantized(&m).unwrap();
                net.forward(batch.images.clone()); // calibrate activations once, as PTQ/QAT start does
                net
            }
        };
        Variant {
            name,
            model: Some(Trainee::new(net, None)),
            optim: AdamWConfig::new().build().into(),
            samples_ms: Vec::new(),
        }
    };
    let mut variants = [
        make("float", None),
        make("qat_w8a8", Some(QuantMapping::w8a8())),
        make("qat_w4a4", Some(QuantMapping::w4a4())),
    ];
    let step = |v: &mut Variant| {
        let model = v.model.take().unwrap();
        let output = TrainStep::step(&model, batch.clone());
        let model = model.optimize(&mut v.optim, 1e-4.into(), output.grads);
        v.model = Some(model);
    };
    for v in variants.iter_mut() {
        for _ in 0..3 {
            step(v);
        }
    }
    device.sync().ok();
    for _ in 0..rounds {
        for v in variants.iter_mut() {
            let start = Instant::now();
            for _ in 0..steps {
                step(v);
            }
            // Read a parameter back so queued GPU work is counted.
            let _ = v
                .model
                .as_ref()
                .unwrap()
                .valid()
                .net
                .forward(batch.images.clone().inner())
                .into_data();
            v.samples_ms
                .push(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
    }
    // Launches of one more step per variant (GPU backends only).
    let mut launches = Vec::new();
    for v in variants.iter_mut() {
        if let Some(count) = quant::launches::count_step(&device, || step(v)) {
            let (weights, activations) =
                quant::qat::quantizer_paths(&v.model.as_ref().unwrap().net);
            launches.push(launch_table::StepLaunches {
                name: v.name,
                count,
                weight_quantizers: weights.len(),
                activation_quantizers: activations.len(),
            });
        }
    }
    let float_ms = median(&variants[0].samples_ms);
    println!(
        "{model_name} training step, batch {batch_size}, backend {backend}, {rounds} rounds × {steps} steps (median)"
    );
    println!("{:<10} {:>10} {:>8}", "variant", "ms/step", "× float");
    let mut json = format!(
        "{{\"bench\":\"qat-step\",\"model\":\"{model_name}\",\"backend\":\"{backend}\",\"batch\":{batch_size}"
    );
    for v in &variants {
        let ms = median(&v.samples_ms);
        println!("{:<10} {:>10.2} {:>8.2}", v.name, ms, ms / float_ms);
        json.push_str(&format!(",\"{}_ms\":{ms:.3}", v.name));
    }
    for v in &variants[1..] {
        json.push_str(&format!(
            ",\"{}_ratio\":{:.3}",
            v.name,
            median(&v.samples_ms) / float_ms
        ));
    }
    json.push_str(&launch_table::report(&launches));
    json.push_str(&format!(",\"fused_kernels\":{}", quant::fused_enabled()));
    json.push('}');
    println!("{json}");
}
