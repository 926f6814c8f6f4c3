//! Kernel launches a quantizer adds to a training step on a GPU (wgpu; lavapipe in CI), counted
//! through CubeCL's launch hook: a cost figure that does not depend on the machine. The targets
//! (issue "GPU: fused fake-quant and observer kernels"): forward + backward of a weight quantizer
//! add at most 3 launches, of an activation quantizer with its observer at most 4.
//!
//! A W8A8 weight (per output channel, symmetric, observed every step) adds 1: one kernel
//! observes each channel and fake-quantizes it (the test pins that: a refactor back to an
//! observer launch and a fake-quant launch would still be within the budget of 3).
//!
//! A W8A8 activation (per tensor, affine, moving-average observer, 1.5 M elements here) adds 3:
//! every reduction cube folds its part's range into the tensor's range by atomic min / max on
//! order-preserving integer keys, one kernel folds that range into the running one and
//! fake-quantizes with the new qparams keeping the clip mask, and the backward applies the mask.
//! Before the atomic keys, a tensor of over 4,096 elements per parameter took a fourth launch to
//! combine the partial ranges.
//!
//! An LSQ activation quantizer on an affine grid (W4A4's) adds 3: the forward kernel, the
//! backward kernel, and, for a per-tensor scale over more than 4,096 elements, the launch that
//! adds up the scale gradient's partial sums (1.5 M elements here). The kernels compute its zero
//! point from the frozen observer's range themselves (that was one more launch, the observer
//! kernel's), and add a learned scale's stored `anchor + delta` themselves (the sum was another).
//!
//! A layer's integer bias (`round(b / (s_w · s_x)) · s_w · s_x`, the engine's int32 bias) adds
//! none: the weight quantizer's launch (W8's observer kernel, LSQ's fake-quant kernel) rounds it
//! too, computing both steps from the quantizers' state, with no backward launch; the composite
//! ops took seven, a rounding kernel of its own one.
//!
//! An embedding lookup adds what a weight quantizer adds when the table has no more rows than
//! the lookup, and 3 (W8) or 5 (W4, learned scales) when it has more (see
//! [`embedding_launches`]); an activation quantizer on a channels-last tensor (a convolution's
//! output) adds what it adds on a row-major one, with no layout copy (see
//! [`channels_last_launches`]).
//!
//! One test in its own binary: launch counting is process-wide, and other tests running on the
//! GPU meanwhile would be counted too.
#![cfg(feature = "wgpu")]

use burn::tensor::Int;
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use quant::launches::{LaunchCount, LaunchCounter};
use quant::{
    LayerKind, QuantEmbeddingConfig, QuantLinearConfig, QuantMapping, Quantizer, QuantizerConfig,
};

/// Launches of one forward + backward of `f` applied to a `shape` leaf, counted after four
/// warm-up calls (LSQ initialises its scale on the first; autotuning settles): one to find the
/// output's shape, three in [`count_launches`].
fn launches(device: &Device, shape: [usize; 2], f: &dyn Fn(Tensor<2>) -> Tensor<2>) -> LaunchCount {
    let x = Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad();
    // The output's shape (a layer's differs from its input's), from one more warm-up call.
    let dy = Tensor::<2>::random(f(x.clone()).dims(), Distribution::Default, device);
    count_launches(device, || {
        // Backward from the product itself (seeded with ones), not from its sum: a sum's backward
        // broadcasts a one-element gradient, and where an opaque op consumes it burn-fusion
        // launches one more fill, an artifact of the test's loss rather than of the quantizer.
        let grads = (f(x.clone()) * dy.clone()).backward();
        let dx = x.grad(&grads).expect("x has a gradient");
        let _ = dx.into_data();
    })
}

/// What a quantizer adds over the identity: `(added launches, the quantizer's own breakdown)`.
fn added(
    device: &Device,
    shape: [usize; 2],
    quantizer: &Quantizer,
    weight: bool,
) -> (i64, LaunchCount) {
    let plain = launches(device, shape, &|x| x);
    let quantized = launches(device, shape, &|x| {
        if weight {
            quantizer.forward_weight(x)
        } else {
            quantizer.forward(x)
        }
    });
    if std::env::var("QAT_LAUNCHES_BY_KERNEL").is_ok() {
        println!(
            "plain: {:?}\nquantized: {:?}",
            plain.by_kernel, quantized.by_kernel
        );
    }
    (quantized.total as i64 - plain.total as i64, quantized)
}

fn config(mapping: QuantMapping, weight: bool) -> QuantizerConfig {
    if weight {
        mapping.weight
    } else {
        mapping.activation
    }
    .expect("preset has the quantizer")
}

#[test]
fn quantizers_add_at_most_three_launches_for_weights_and_four_for_observed_activations() {
    let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    // (preset, most launches for the weight quantizer, for the activation quantizer)
    let presets = [
        ("w8a8", QuantMapping::w8a8(), 3, 4),
        ("w4a4", QuantMapping::w4a4(), 3, 4),
    ];
    let mut report = Vec::new();
    for (preset, mapping, weight_budget, activation_budget) in presets {
        // A Linear weight [d_in, d_out] (per output channel) and an activation [batch, features]
        // large enough that a per-tensor reduction takes many cubes.
        let weight = config(mapping.clone(), true)
            .init(LayerKind::Linear, &[512, 384], &device)
            .expect("weight quantizer");
        let activation = config(mapping, false)
            .init(LayerKind::Activation, &[1, 384], &device)
            .expect("activation quantizer");
        let (w_added, w_count) = added(&device, [512, 384], &weight, true);
        let (a_added, a_count) = added(&device, [4096, 384], &activation, false);
        report.push(format!(
            "{preset}: weight +{w_added} ({:?}), activation +{a_added} ({:?})",
            w_count.by_kernel, a_count.by_kernel
        ));
        assert!(
            w_added <= weight_budget,
            "{preset} weight quantizer adds {w_added} launches (at most {weight_budget}): {:?}",
            w_count.by_kernel
        );
        if preset == "w8a8" {
            assert_eq!(
                w_added, 1,
                "a W8 weight is observed and quantized in one kernel: {:?}",
                w_count.by_kernel
            );
            assert_eq!(
                a_added, 3,
                "an observed activation takes a reduction into range keys, the observer update \
                 with the fake quantization, and the masked backward, at any size: {:?}",
                a_count.by_kernel
            );
        } else {
            assert_eq!(
                a_added, 3,
                "an LSQ activation's zero point comes from the observer's range inside the \
                 kernels: {:?}",
                a_count.by_kernel
            );
        }
        assert!(
            a_added <= activation_budget,
            "{preset} activation quantizer adds {a_added} launches (at most {activation_budget}): {:?}",
            a_count.by_kernel
        );
    }
    report.push(integer_bias_launches(&device));
    report.push(embedding_launches(&device));
    report.push(channels_last_launches(&device));
    println!("{}", report.join("\n"));
}

/// The launches a linear layer's integer bias adds, W8A8 (observed steps) and W4A4 (learned LSQ
/// steps): the layer fed by its producer (bias snapped to the accumulator's grid) against the same
/// layer without the producer (float bias). None: the weight quantizer's launch rounds the bias
/// too, W8A8's observer kernel (its cube knows the channel's new step) and W4A4's LSQ fake-quant
/// kernel (a thread per bias element reads the channel's learned step), each reading the input's
/// step from its quantizer's state; no backward launch either. (Before 2026-12-06 a rounding
/// kernel of its own: +1.)
fn integer_bias_launches(device: &Device) -> String {
    let mut report = Vec::new();
    for (preset, mapping, budget) in [
        ("w8a8", QuantMapping::w8a8(), 0),
        ("w4a4", QuantMapping::w4a4(), 0),
    ] {
        let producer = config(mapping.clone(), false)
            .init(LayerKind::Activation, &[1, 256], device)
            .expect("activation quantizer");
        let layer = QuantLinearConfig::new(256, 120)
            .with_weight(mapping.weight.clone())
            .init(device);
        let float_bias = launches(device, [64, 256], &|x| layer.forward(producer.forward(x)));
        let integer_bias = launches(device, [64, 256], &|x| {
            layer.forward_from(producer.forward(x), Some(&producer))
        });
        let what = format!("the {preset} integer bias");
        let added = added_within(&what, budget, &integer_bias, &float_bias);
        assert_eq!(
            integer_bias.ours,
            float_bias.ours + budget as usize,
            "{what}: {budget} launch(es) of our kernels ({:?})",
            integer_bias.by_kernel
        );
        report.push(format!("{preset} linear: integer bias +{added}"));
    }
    report.join("\n")
}

/// The launches a per-row embedding lookup adds over the float lookup, W8 (observed) and W4
/// (LSQ), on a large table with more rows than the lookup (512 rows of 520, 32 ids: only the
/// looked-up rows are fake-quantized) and on a small one (16 rows: the whole table is, and then
/// looked up; see `quant::WHOLE_TABLE_ELEMENTS`).
///
/// - A small table adds what the quantizer adds to any weight (W8: 1, W4: 2): the observer and
///   the fake quantization are one launch, and the rows' grids need no pick.
/// - A large W8 table adds 3: the observer over the table, the looked-up rows' scales and zero
///   points, and the fake-quant kernel of the rows. The observer's
///   qparams are passed on, not recomputed from its range (that was +5 here; in the BERT step,
///   where they did not fuse, a dozen launches per table).
/// - A large W4 table adds 3: the fake-quant kernel, which reads each looked-up row's learned
///   scale in the table's scales, the LSQ backward kernel, and one launch (a single cube) that
///   adds the rows' scale gradients into the table's. Gathering the rows' scales first and
///   scattering their gradient back took 5 (a gather, a fill and a scatter); quantizing the
///   whole table would take 2, but at BERT's 30,522 rows and 4,096 looked-up tokens it streams
///   the table 7× over, forward and backward, every step.
fn embedding_launches(device: &Device) -> String {
    let mut report = Vec::new();
    // (preset, quantizer, launches added on a large table, on a small one)
    for (preset, mapping, large_adds, small_adds) in [
        ("w8", QuantMapping::w8a8(), 3, 1),
        ("w4", QuantMapping::w4a4(), 3, 2),
    ] {
        for (rows, expected) in [(512, large_adds), (16, small_adds)] {
            assert_eq!(
                rows * 520 > quant::WHOLE_TABLE_ELEMENTS,
                rows == 512,
                "the large table is above the whole-table size, the small one below"
            );
            let float = QuantEmbeddingConfig::new(rows, 520).init(device);
            let quantized = QuantEmbeddingConfig::new(rows, 520)
                .with_weight(mapping.weight.clone())
                .init(device);
            let lookup = |layer: &quant::QuantEmbedding| {
                let ids = Tensor::<1, Int>::arange(0..32, device)
                    .remainder_scalar(rows as i64)
                    .reshape([2, 16]);
                let table = layer.weight.base();
                count_launches(device, || {
                    let grads = layer.forward(ids.clone()).sum().backward();
                    let _ = table.grad(&grads).expect("table gradient").into_data();
                })
            };
            let (plain, quantized_count) = (lookup(&float), lookup(&quantized));
            let what = format!("a {preset} embedding lookup in {rows} rows");
            let added = added_within(&what, expected, &quantized_count, &plain);
            assert_eq!(
                added, expected,
                "{what}: {:?} against {:?}",
                quantized_count.by_kernel, plain.by_kernel
            );
            report.push(format!("{preset} embedding lookup, {rows} rows: +{added}"));
        }
    }
    report.join("\n")
}

/// The launches `ours` adds over `plain`, asserted to be at most `budget`.
fn added_within(what: &str, budget: i64, ours: &LaunchCount, plain: &LaunchCount) -> i64 {
    let added = ours.total as i64 - plain.total as i64;
    assert!(
        added <= budget,
        "{what} adds {added} launches (at most {budget}): {:?} against {:?}",
        ours.by_kernel,
        plain.by_kernel
    );
    added
}

/// Launches of `step` after three warm-up calls.
fn count_launches(device: &Device, step: impl Fn()) -> LaunchCount {
    for _ in 0..3 {
        step();
    }
    device.sync().expect("sync");
    let counter = LaunchCounter::start();
    step();
    device.sync().expect("sync");
    counter.finish()
}

/// The launches a W8A8 activation quantizer adds on a channels-last `[n, c, h, w]` tensor (how
/// a GPU convolution leaves its output), its gradient arriving channels-last too: 3, as on a
/// row-major tensor, and none of them a layout copy (a per-tensor view is the tensor itself, and the kernels read and
/// write through its strides; a row-major view had cost a copy each way, and the next
/// convolution a repack).
fn channels_last_launches(device: &Device) -> String {
    const BUDGET: i64 = 3;
    let activation = config(QuantMapping::w8a8(), false)
        .init(LayerKind::Activation, &[1, 16, 1, 1], device)
        .expect("activation quantizer");
    let shape = [8, 16, 12, 12];
    let channels_last = || {
        Tensor::<4>::random([8, 12, 12, 16], Distribution::Default, device).permute([0, 3, 1, 2])
    };
    let x = channels_last().require_grad();
    let dy = channels_last();
    let count = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
        count_launches(device, || {
            let grads = (f(x.clone()) * dy.clone()).backward();
            // Summed on the device: reading a channels-last gradient back would repack it.
            let dx = x.grad(&grads).expect("x has a gradient");
            let _ = dx.sum().into_data();
        })
    };
    let plain = count(&|x| x);
    let quantized = count(&|x| activation.forward(x));
    let added = quantized.total as i64 - plain.total as i64;
    let copies = quantized.matching("copy") as i64 - plain.matching("copy") as i64;
    assert!(
        added <= BUDGET && copies == 0,
        "a W8A8 activation quantizer on a channels-last {shape:?} tensor adds {added} launches \
         (at most {BUDGET}), {copies} of them layout copies (none): {:?} against {:?}",
        quantized.by_kernel,
        plain.by_kernel
    );
    format!("w8a8 activation, channels-last: +{added}, no copies")
}
