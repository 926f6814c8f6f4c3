//! The fused ops that fold two into one launch, as their two ops: where one launch would save
//! nothing (on the CPU) or a device or a shape lacks what the single launch needs.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{IntDType, TensorMetadata};
use burn::tensor::Shape;

use super::{FakeQuantKernels, LsqBiasGrid, ObserveRule, Range, StepRule};

/// [`FakeQuantKernels::observe_fake_quant`] as its two ops, [`FakeQuantKernels::observe_range`]
/// and the fixed-scale forward (with `keep_mask` the one that keeps the clip mask): where one
/// kernel would save nothing (on the CPU) or the device lacks what the fused launches need.
#[allow(clippy::too_many_arguments)]
pub(super) fn observe_then_fake_quant<B: FakeQuantKernels>(
    x: FloatTensor<B>,
    (min, max): (FloatTensor<B>, FloatTensor<B>),
    view: [usize; 4],
    per_group: bool,
    num_params: usize,
    rule: ObserveRule,
    keep_mask: bool,
) -> (Range<B>, (FloatTensor<B>, IntTensor<B>)) {
    let (range, (scale, zero_point)) = B::observe_range(
        x.clone(),
        min,
        max,
        view,
        per_group,
        num_params,
        rule.symmetric,
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
    );
    if keep_mask {
        let dequantized = B::fake_quant_with_mask(
            x,
            scale.clone(),
            zero_point,
            rule.qmin,
            rule.qmax,
            view,
            per_group,
        );
        return (range, dequantized);
    }
    let no_mask = B::int_empty(Shape::new([0]), &x.device(), IntDType::U32);
    let dequantized = B::lsq_fake_quant(
        x,
        scale.clone(),
        scale.clone(),
        zero_point.clone(),
        zero_point,
        rule.qmin,
        rule.qmax,
        view,
        per_group,
        true,
        1.0,
        false,
        false,
    );
    (range, (dequantized, no_mask))
}

/// [`FakeQuantKernels::observe_fake_quant_bias`] as its two ops, [`FakeQuantKernels::observe_fake_quant`]
/// (no mask) and [`FakeQuantKernels::round_to_step_product`] at the new range's step: where one
/// kernel would save nothing (on the CPU) or cannot do both (a weight's output channel past one
/// reduction cube, a bias not one per parameter).
#[allow(clippy::too_many_arguments)]
pub(super) fn observe_fake_quant_then_round_bias<B: FakeQuantKernels>(
    x: FloatTensor<B>,
    (min, max): (FloatTensor<B>, FloatTensor<B>),
    bias: FloatTensor<B>,
    (input_low, input_high): (FloatTensor<B>, FloatTensor<B>),
    (view, per_group, num_params): ([usize; 4], bool, usize),
    rule: ObserveRule,
    input_rule: StepRule,
    limit: f32,
) -> (Range<B>, (FloatTensor<B>, FloatTensor<B>)) {
    let ((min, max), (dequantized, _mask)) = B::observe_fake_quant(
        x,
        min,
        max,
        view,
        per_group,
        num_params,
        rule.symmetric,
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
        false,
    );
    let rounded = B::round_to_step_product(
        bias,
        min.clone(),
        max.clone(),
        input_low,
        input_high,
        rule.step_rule(),
        input_rule,
        limit,
    );
    ((min, max), (dequantized, rounded))
}

/// [`FakeQuantKernels::lsq_fake_quant_bias`] as its two ops, [`FakeQuantKernels::lsq_fake_quant`]
/// and [`FakeQuantKernels::round_to_step_product`]: where one kernel would save nothing (on the
/// CPU), cannot do both (a bias with more elements than the weight, or not one per parameter),
/// or the scale is not learned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lsq_fake_quant_then_round_bias<B: FakeQuantKernels>(
    x: FloatTensor<B>,
    (scale, scale_offset): (FloatTensor<B>, FloatTensor<B>),
    (zero_point, zero_point_high): (FloatTensor<B>, FloatTensor<B>),
    bias: FloatTensor<B>,
    (input_low, input_high): (FloatTensor<B>, FloatTensor<B>),
    grid: LsqBiasGrid,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dequantized = B::lsq_fake_quant(
        x,
        scale.clone(),
        scale_offset.clone(),
        zero_point,
        zero_point_high,
        grid.range.0,
        grid.range.1,
        grid.view,
        grid.per_group,
        false,
        grid.grad_factor,
        true,
        grid.zero_point_from_range,
    );
    let rounded = B::round_to_step_product(
        bias,
        scale_offset,
        scale,
        input_low,
        input_high,
        grid.rules.0,
        grid.rules.1,
        grid.limit,
    );
    (dequantized, rounded)
}
