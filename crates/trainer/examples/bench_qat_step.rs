//! Benchmark: one QAT training step (forward, backward, AdamW; the trainer's own `TrainStep`) of
//! LeNet-BN (or, with `--model resnet`, ResNet-20) on a real Fashion-MNIST batch — or with
//! `--model lstm [--hidden H] [--layers L]` the LSTM classifier on Japanese Vowels utterances —
//! float vs QAT W8A8 vs QAT W4A4 (LSQ), side by side.
//!
//! Run through `cargo xtask bench qat-step [--model lenet|resnet|lstm] [--backend B] [--batch N] [--rounds R] [--steps K] [--distill]`;
//! `--distill` adds QAT W4A4 with the float model as teacher (`qat_w4a4_kd`: what
//! `qat.distillation` adds to a step, its teacher's forward pass and the soft-target loss).
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

#[path = "common/bench_args.rs"]
mod bench_args;
#[path = "common/cnn_step.rs"]
mod cnn_step;
#[path = "common/launch_table.rs"]
mod launch_table;
#[path = "common/lstm_step.rs"]
mod lstm_step;
#[path = "common/optimizer.rs"]
mod optimizer;

use bench_args::{arg, median, name_thread, number};
use burn::tensor::Device;
use cnn_step::{Variant, distilled, embedded_batch, read_back, step, variants};
use trainer::task::TaskNet;
use trainer::{ModelConfig, select_device};

fn main() {
    trainer::allocator::keep_freed_memory();
    // On a pool thread, as the trainer runs (see `trainer::on_compute_pool`).
    trainer::on_compute_pool(bench);
}

fn bench() {
    let backend = arg("--backend", "flex");
    let (batch_size, rounds, steps) = (
        number("--batch", 128),
        number("--rounds", 7),
        number("--steps", 10),
    );
    let device = select_device(&backend).unwrap_or_else(|e| panic!("{e}"));
    let autodiff = device.clone().autodiff();
    let model_name = arg("--model", "lenet");
    let distill = std::env::args().any(|a| a == "--distill");
    let setup = Setup {
        device,
        backend,
        model_name: model_name.clone(),
        batch_size,
        rounds,
        steps,
    };
    if model_name == "lstm" {
        let batch = lstm_step::batch(batch_size, &autodiff);
        let (hidden, layers) = (number("--hidden", 64), number("--layers", 1));
        let variants = lstm_step::variants(hidden, layers, &batch, &autodiff).into();
        return run(&setup, variants, &batch, lstm_step::read_back);
    }
    let batch = embedded_batch(batch_size, &autodiff);
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
    let mut variants: Vec<_> = variants(&model, &batch, &autodiff).into();
    if distill {
        let kd = distilled(&model, &variants[0], &batch, &autodiff);
        variants.push(kd);
    }
    run(&setup, variants, &batch, read_back);
}

/// What the run is: its device, the model's name, and how many steps to time.
struct Setup {
    device: Device,
    backend: String,
    model_name: String,
    batch_size: usize,
    rounds: usize,
    steps: usize,
}

/// Times `variants` (float first) on `batch` in alternating rounds, counts their launches (GPU
/// backends), and prints the table and the JSON line; `read_back` waits for a variant's queued
/// work as a training loop's validation does.
fn run<N: TaskNet>(
    setup: &Setup,
    mut variants: Vec<Variant<N>>,
    batch: &N::Batch,
    read_back: impl Fn(&Variant<N>, &N::Batch),
) {
    let Setup {
        device,
        backend,
        model_name,
        batch_size,
        rounds,
        steps,
    } = setup;
    for v in variants.iter_mut() {
        for _ in 0..3 {
            step(v, batch);
        }
        // As in the rounds, so that the first round's float steps also follow a read-back:
        // burn-fusion's choices depend on what ran before (after training steps alone a float
        // LeNet-BN step ran 132 launches, after a read-back 118).
        read_back(v, batch);
    }
    device.sync().ok();
    for _ in 0..*rounds {
        for v in variants.iter_mut() {
            let start = Instant::now();
            name_thread(&format!("T{}", v.name));
            for _ in 0..*steps {
                step(v, batch);
            }
            // Wait for the queued GPU work, so that it is timed. Each sync also closes a table
            // of kernel times under CubeCL's profiler (`--kernel-times`): the steps', then the
            // read-back's.
            device.sync().ok();
            name_thread("idle");
            read_back(v, batch);
            device.sync().ok();
            v.samples_ms
                .push(start.elapsed().as_secs_f64() * 1e3 / *steps as f64);
        }
    }
    // Launches of one more step per variant (GPU backends only), forward + backward and the
    // optimizer's update apart.
    let launches: Vec<_> = variants
        .iter_mut()
        .filter_map(|v| {
            launch_table::counted_step(
                device,
                v.name,
                &mut v.model,
                &mut v.optim,
                cnn_step::LEARNING_RATE,
                batch.clone(),
            )
        })
        .collect();
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
