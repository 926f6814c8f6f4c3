//! Kernel launches a whole QAT training step adds on a GPU (wgpu; lavapipe in CI): LeNet-BN's
//! step (the trainer's `TrainStep` and AdamW, as `cargo xtask bench qat-step` runs it), float
//! against QAT W8A8 and W4A4 (LSQ), held to the budget per quantizer — 3 launches per
//! weight quantizer and 4 per activation quantizer with its observer — counted over the whole
//! model, so that launches the quantizers cause *around* their own kernels (split fusion chains,
//! layout copies, the integer bias's steps) count too. The layers' integer biases (one launch
//! each) are not in the budget. A figure that does not depend on the machine.
//!
//! Its own binary: launch counting is process-wide.
#![cfg(feature = "wgpu")]

#[path = "../crates/trainer/examples/common/cnn_step.rs"]
mod cnn_step;

use cnn_step::{embedded_batch, read_back, step, variants};
use trainer::{ModelConfig, select_device};

/// Steps before counting.
const WARM_UP_STEPS: usize = 3;

#[test]
fn lenet_qat_steps_add_at_most_three_launches_per_weight_and_four_per_activation_quantizer() {
    let device = select_device("wgpu").expect("wgpu (lavapipe in CI)");
    let autodiff = device.clone().autodiff();
    let batch = embedded_batch(16, &autodiff);
    let model = ModelConfig::LenetBn {
        channels: [16, 32],
        hidden: 128,
    };
    let mut variants = variants(&model, &batch, &autodiff);
    // Warm-up, every variant before any is counted: LSQ initialises its scales on the first step,
    // autotuning (whose trial launches would be counted) settles; then the read-back the bench
    // does after each round (see `read_back`), so that the counts are the bench's.
    for v in variants.iter_mut() {
        for _ in 0..WARM_UP_STEPS {
            step(v, &batch);
        }
        read_back(v, &batch);
    }
    let counts: Vec<_> = variants
        .iter_mut()
        .map(|v| {
            quant::launches::count_step(&device, || step(v, &batch)).expect("wgpu counts launches")
        })
        .collect();
    let float = counts[0].total as i64;
    let mut report = vec![format!("float: {float}")];
    for (v, count) in variants.iter().zip(&counts).skip(1) {
        let (weights, activations) = quant::qat::quantizer_paths(&v.model.as_ref().unwrap().net);
        let budget = (3 * weights.len() + 4 * activations.len()) as i64;
        let added = count.total as i64 - float;
        report.push(format!(
            "{}: {} (+{added}, budget {budget}, {} of our kernels)",
            v.name, count.total, count.ours
        ));
        assert!(
            count.ours >= 2 * weights.len(),
            "{}: our kernels ran ({:?})",
            v.name,
            count.by_kernel
        );
        assert!(
            added <= budget,
            "{}: the QAT step adds {added} launches, more than {} weight and {} activation quantizers may ({budget}): {:?}",
            v.name,
            weights.len(),
            activations.len(),
            count.by_kernel
        );
    }
    println!("{}", report.join("\n"));
}
