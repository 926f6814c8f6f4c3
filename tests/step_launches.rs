//! Kernel launches a whole QAT training step adds on a GPU (wgpu; lavapipe in CI): LeNet-BN's
//! step (the trainer's `TrainStep` and AdamW, as `cargo xtask bench qat-step` runs it), float
//! against QAT W8A8 and W4A4 (LSQ), and a MiniLM fine-tuning step (as `cargo xtask bench
//! bert-step` runs it, on the committed one-layer fixture), float against QAT W8A8, held to the
//! issue's budget per quantizer — 3 launches per weight quantizer and 4 per activation quantizer
//! with its observer — counted over the whole model, so that launches the quantizers cause
//! *around* their own kernels (split fusion chains, layout copies, the integer bias's steps, the
//! embedding tables' row picks) count too. The layers' integer biases cost no launch (the weight
//! quantizer's launch rounds its layer's bias too); before 2026-12-06 they were one each,
//! outside the budget. A figure that does not depend on the machine.
//!
//! MiniLM W4A8's whole step is not held to it: learning the weights' scales costs launches
//! outside its kernels (their AdamW updates, 9 on the fixture), 2 over on the fixture (10 before
//! its integer biases were rounded in the weights' launches); its forward + backward and its
//! quantizers' own kernels are held to it.
//!
//! Its own binary, its tests one at a time (`COUNTING`): launch counting is process-wide.
#![cfg(feature = "wgpu")]

#[path = "../crates/trainer/examples/common/bert_step.rs"]
mod bert_step;
#[path = "../crates/trainer/examples/common/cnn_step.rs"]
mod cnn_step;
#[path = "../crates/trainer/examples/common/launch_table.rs"]
mod launch_table;
#[path = "../crates/trainer/examples/common/optimizer.rs"]
mod optimizer;

use burn::module::Module;
use cnn_step::{embedded_batch, read_back, step, variants};
use quant::launches::{LaunchCount, count_step};
use trainer::{ModelConfig, select_device};

/// Steps before counting.
const WARM_UP_STEPS: usize = 3;

/// Held by each test throughout: another test's launches would be counted too.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One variant's counted step and its quantizers.
struct Counted {
    name: &'static str,
    count: LaunchCount,
    weights: usize,
    activations: usize,
}

impl Counted {
    fn new(name: &'static str, count: LaunchCount, net: &impl Module) -> Self {
        let (weights, activations) = quant::qat::quantizer_paths(net);
        Counted {
            name,
            count,
            weights: weights.len(),
            activations: activations.len(),
        }
    }
}

/// Holds each QAT variant (after the float one, `counted[0]`) to the budget of its quantizers:
/// its own kernels always (they ran, at least one per quantizer, and fit), the whole step's
/// launches over the float step's where `whole_step` says so. Prints the counts.
fn hold_to_budget(counted: &[Counted], whole_step: impl Fn(&str) -> bool) {
    let float = counted[0].count.total as i64;
    let mut report = vec![format!("float: {float}")];
    for c in &counted[1..] {
        let budget = (3 * c.weights + 4 * c.activations) as i64;
        let added = c.count.total as i64 - float;
        let ours = c.count.ours;
        report.push(format!(
            "{}: {} (+{added}, budget {budget}, {ours} of our kernels)",
            c.name, c.count.total
        ));
        assert!(
            ours >= c.weights + c.activations && ours as i64 <= budget,
            "{}: our kernels ran, within the budget ({ours} launches, budget {budget}): {:?}",
            c.name,
            c.count.by_kernel
        );
        if whole_step(c.name) {
            assert!(
                added <= budget,
                "{}: the QAT step adds {added} launches, more than {} weight and {} activation quantizers may ({budget}): {:?}",
                c.name,
                c.weights,
                c.activations,
                c.count.by_kernel
            );
        }
    }
    println!("{}", report.join("\n"));
}

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
    let counted: Vec<_> = variants
        .iter_mut()
        .map(|v| {
            let count = count_step(&device, || step(v, &batch)).expect("wgpu counts launches");
            Counted::new(v.name, count, &v.model.as_ref().unwrap().net)
        })
        .collect();
    hold_to_budget(&counted, |_| true);
}

/// The committed one-layer MiniLM fixture's fine-tuning step at the bench's 32 × 64 tokens: QAT
/// W8A8 within the budget of its 11 weight and 10 activation quantizers (+56 of 73 on
/// 2026-12-06, +64 before the weights' launches rounded the integer biases), W4A8's forward +
/// backward (+66; +74 before) and own kernels too.
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
    // Counted in the bench's two parts, forward + backward and the AdamW update.
    let parts: Vec<_> = variants
        .iter_mut()
        .map(|v| {
            launch_table::counted_step(
                &device,
                v.name,
                &mut v.model,
                &mut v.optim,
                bert_step::LEARNING_RATE,
                batch.clone(),
            )
            .expect("wgpu counts launches")
        })
        .collect();
    // Forward + backward, what the budget per quantizer covers: W4A8 too.
    let float = parts[0].count.forward_backward.total as i64;
    for p in &parts[1..] {
        let budget = (3 * p.weight_quantizers + 4 * p.activation_quantizers) as i64;
        let added = p.count.forward_backward.total as i64 - float;
        println!("{} forward + backward: +{added} (budget {budget})", p.name);
        assert!(
            added <= budget,
            "{}: forward + backward add {added} launches, more than the budget {budget}: {:?}",
            p.name,
            p.count.forward_backward.by_kernel
        );
    }
    let counted: Vec<_> = parts
        .iter()
        .map(|p| Counted {
            name: p.name,
            count: p.total(),
            weights: p.weight_quantizers,
            activations: p.activation_quantizers,
        })
        .collect();
    hold_to_budget(&counted, |name| name == "qat_w8a8");
}
