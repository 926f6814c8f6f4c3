//! Kernel launches a whole QAT training step adds on a GPU (wgpu; lavapipe in CI): LeNet-BN's
//! step (the trainer's `TrainStep` and AdamW, as `cargo xtask bench qat-step` runs it), float
//! against QAT W8A8 and W4A4 (LSQ), and a MiniLM fine-tuning step (as `cargo xtask bench
//! bert-step` runs it, on the committed one-layer fixture), float against QAT W8A8, held to the
//! issue's budget per quantizer — 3 launches per weight quantizer and 4 per activation quantizer
//! with its observer — counted over the whole model, so that launches the quantizers cause
//! *around* their own kernels (split fusion chains, layout copies, the integer bias's steps, the
//! embedding tables' row picks) count too. The layers' integer biases (one launch each) are not
//! in the budget. A figure that does not depend on the machine.
//!
//! MiniLM W4A8 is not held to it: learning the weights' scales costs launches outside forward
//! and backward (their AdamW updates, the scatter of the embedding tables' per-row scale
//! gradients), 19 over on the fixture; its quantizers' own kernels are held to it.
//!
//! Its own binary, its tests one at a time (`COUNTING`): launch counting is process-wide.
#![cfg(feature = "wgpu")]

#[path = "../crates/trainer/examples/common/bert_step.rs"]
mod bert_step;
#[path = "../crates/trainer/examples/common/cnn_step.rs"]
mod cnn_step;

use cnn_step::{embedded_batch, read_back, step, variants};
use trainer::{ModelConfig, select_device};

/// Steps before counting.
const WARM_UP_STEPS: usize = 3;

/// Held by each test throughout: another test's launches would be counted too.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn lenet_qat_steps_add_at_most_three_launches_per_weight_and_four_per_activation_quantizer() {
    let _alone = COUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
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

/// The committed one-layer MiniLM fixture's fine-tuning step at the bench's 32 × 64 tokens: QAT
/// W8A8 within the budget of its 11 weight and 10 activation quantizers (+72 of 73 when
/// written), W4A8's own kernels too.
#[test]
fn minilm_qat_w8a8_step_adds_at_most_three_launches_per_weight_and_four_per_activation_quantizer() {
    let _alone = COUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = select_device("wgpu").expect("wgpu (lavapipe in CI)");
    let autodiff = device.clone().autodiff();
    autodiff.seed(7);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/fixtures/minilm-l1"
    );
    let source = bert_step::Source::open(fixture, false);
    let batch = bert_step::batch(source.config.vocab_size, [32, 64], &autodiff);
    let mut variants: Vec<_> = bert_step::VARIANTS
        .iter()
        .map(|(name, scheme)| {
            let model = bert_step::model(&source, *scheme, false, &batch, &autodiff);
            bert_step::Variant::new(name, model)
        })
        .collect();
    for v in variants.iter_mut() {
        for _ in 0..WARM_UP_STEPS {
            bert_step::step(v, &batch);
        }
    }
    let counts: Vec<_> = variants
        .iter_mut()
        .map(|v| {
            quant::launches::count_step(&device, || bert_step::step(v, &batch))
                .expect("wgpu counts launches")
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
            count.ours as i64 <= budget && count.ours >= weights.len() + activations.len(),
            "{}: our kernels ran, within the budget ({} launches, budget {budget}): {:?}",
            v.name,
            count.ours,
            count.by_kernel
        );
        if v.name == "qat_w8a8" {
            assert!(
                added <= budget,
                "{}: the QAT step adds {added} launches, more than {} weight and {} activation quantizers may ({budget}): {:?}",
                v.name,
                weights.len(),
                activations.len(),
                count.by_kernel
            );
        }
    }
    println!("{}", report.join("\n"));
}
