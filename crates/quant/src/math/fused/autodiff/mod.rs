//! The autodiff side of [`FakeQuantKernels`]: LSQ / clipped-STE fake quantization as one tracked
//! op whose backward is one kernel, the integer bias's rounding as one whose backward is the
//! identity; every other kernel passes straight through to the inner backend. The backward
//! passes and what they save are in [`backward`].

mod backward;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend};

use backward::{
    ClipMasked, FakeQuantBackward, FakeQuantState, RowsBackward, RowsState, Saved, StraightThrough,
    zero_point_of_range,
};

use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, StepRule,
    lsq_fake_quant_then_round_bias,
};

impl<B: FakeQuantKernels, C: CheckpointStrategy> FakeQuantKernels for Autodiff<B, C> {
    fn max_abs_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::max_abs_per_param(
            Self::inner(x),
            view,
            per_group,
            num_params,
        ))
    }

    fn min_max_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (min, max) = B::min_max_per_param(Self::inner(x), view, per_group, num_params);
        (Self::from_inner(min), Self::from_inner(max))
    }

    fn observe_range(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
    ) -> Observed<Self> {
        let ((min, max), (scale, zero_point)) = B::observe_range(
            Self::inner(x),
            Self::inner(min),
            Self::inner(max),
            view,
            per_group,
            num_params,
            symmetric,
            averaging,
            qmin,
            qmax,
            symmetric_zero_point,
            eps,
        );
        (
            (Self::from_inner(min), Self::from_inner(max)),
            (Self::from_inner(scale), Self::from_inner(zero_point)),
        )
    }

    fn observe_fake_quant(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
        keep_mask: bool,
    ) -> (Range<Self>, (FloatTensor<Self>, IntTensor<Self>)) {
        let (x, x_node) = x.into_parts();
        let ((min, max), (dequantized, mask)) = B::observe_fake_quant(
            x,
            Self::inner(min),
            Self::inner(max),
            view,
            per_group,
            num_params,
            symmetric,
            averaging,
            qmin,
            qmax,
            symmetric_zero_point,
            eps,
            keep_mask,
        );
        let dequantized = if keep_mask {
            // The new range may clip: the gradient is masked, as the fixed-scale op masks it.
            match ClipMasked.prepare::<C>([x_node]).compute_bound().stateful() {
                OpsKind::Tracked(prep) => prep.finish(mask.clone(), dequantized),
                OpsKind::UnTracked(prep) => prep.finish(dequantized),
            }
        } else {
            // The new range holds every element: nothing clips, the gradient passes straight
            // through.
            StraightThrough
                .prepare::<C>([x_node])
                .compute_bound()
                .stateless(dequantized)
        };
        (
            (Self::from_inner(min), Self::from_inner(max)),
            (dequantized, mask),
        )
    }

    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
        with_zero_point_grad: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> ((FloatTensor<Self>, FloatTensor<Self>), FloatTensor<Self>) {
        let ((dx, ds), dzp) = B::fake_quant_backward(
            Self::inner(grad),
            Self::inner(x),
            Self::inner(scale),
            Self::inner(scale_offset),
            Self::inner(zero_point),
            Self::inner(zero_point_high),
            qmin,
            qmax,
            view,
            per_group,
            with_scale_grad,
            with_zero_point_grad,
            grad_factor,
            with_offset,
            zero_point_from_range,
        );
        (
            (Self::from_inner(dx), Self::from_inner(ds)),
            Self::from_inner(dzp),
        )
    }

    fn fake_quant_with_mask(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let (dq, mask) = B::fake_quant_with_mask(
            Self::inner(x),
            Self::inner(scale),
            Self::inner(zero_point),
            qmin,
            qmax,
            view,
            per_group,
        );
        (Self::from_inner(dq), mask)
    }

    fn apply_mask(grad: FloatTensor<Self>, mask: IntTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::apply_mask(Self::inner(grad), mask))
    }

    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        clip_free: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FloatTensor<Self> {
        let learned = scale.is_tracked() || zero_point.is_tracked();
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let scale_offset = Self::inner(scale_offset);
        let (zero_point, zero_point_node) = zero_point.into_parts();
        let zero_point_high = Self::inner(zero_point_high);
        let forward = |x: &_, scale: &_, zero_point: &_| {
            B::lsq_fake_quant(
                Clone::clone(x),
                Clone::clone(scale),
                scale_offset.clone(),
                Clone::clone(zero_point),
                zero_point_high.clone(),
                qmin,
                qmax,
                view,
                per_group,
                clip_free,
                grad_factor,
                with_offset,
                zero_point_from_range,
            )
        };
        match FakeQuantBackward
            .prepare::<C>([x_node, scale_node, zero_point_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) if learned => {
                let dequantized = forward(&x, &scale, &zero_point);
                let state = FakeQuantState {
                    x,
                    scale,
                    scale_offset,
                    with_offset,
                    zero_point,
                    zero_point_high,
                    zero_point_from_range,
                    range: (qmin, qmax),
                    view,
                    per_group,
                    grad_factor,
                };
                prep.finish(Saved::Input(state), dequantized)
            }
            OpsKind::Tracked(prep) if clip_free => {
                prep.finish(Saved::Nothing, forward(&x, &scale, &zero_point))
            }
            OpsKind::Tracked(prep) => {
                // A fixed scale (a frozen learned one: its anchor added here, off the hot path).
                let scale = if with_offset {
                    B::float_add(scale, scale_offset.clone())
                } else {
                    scale
                };
                let zero_point = if zero_point_from_range {
                    zero_point_of_range::<B>(zero_point, zero_point_high.clone(), qmin, qmax)
                } else {
                    zero_point
                };
                let (dequantized, mask) =
                    B::fake_quant_with_mask(x, scale, zero_point, qmin, qmax, view, per_group);
                prep.finish(Saved::Mask(mask), dequantized)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x, &scale, &zero_point)),
        }
    }

    fn lsq_fake_quant_bias(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_low: FloatTensor<Self>,
        input_high: FloatTensor<Self>,
        grid: LsqBiasGrid,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        if !scale.is_tracked() {
            // A frozen scale takes the fixed-scale path, which keeps the clip mask instead.
            return lsq_fake_quant_then_round_bias::<Self>(
                x,
                (scale, scale_offset),
                (zero_point, zero_point_high),
                bias,
                (input_low, input_high),
                grid,
            );
        }
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let (zero_point, zero_point_node) = zero_point.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let scale_offset = Self::inner(scale_offset);
        let zero_point_high = Self::inner(zero_point_high);
        let (dequantized, rounded) = B::lsq_fake_quant_bias(
            x.clone(),
            scale.clone(),
            scale_offset.clone(),
            zero_point.clone(),
            zero_point_high.clone(),
            bias,
            Self::inner(input_low),
            Self::inner(input_high),
            grid,
        );
        // The weight's gradients as the LSQ op gives them; the bias's straight through.
        let dequantized = match FakeQuantBackward
            .prepare::<C>([x_node, scale_node, zero_point_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = FakeQuantState {
                    x,
                    scale,
                    scale_offset,
                    with_offset: true,
                    zero_point,
                    zero_point_high,
                    zero_point_from_range: grid.zero_point_from_range,
                    range: grid.range,
                    view: grid.view,
                    per_group: grid.per_group,
                    grad_factor: grid.grad_factor,
                };
                prep.finish(Saved::Input(state), dequantized)
            }
            OpsKind::UnTracked(prep) => prep.finish(dequantized),
        };
        let rounded = StraightThrough
            .prepare::<C>([bias_node])
            .compute_bound()
            .stateless(rounded);
        (dequantized, rounded)
    }

    fn lsq_fake_quant_rows(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        rows: IntTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let scale_offset = Self::inner(scale_offset);
        let zero_point = Self::inner(zero_point);
        let zero_point_high = Self::inner(zero_point_high);
        let dequantized = B::lsq_fake_quant_rows(
            x.clone(),
            scale.clone(),
            scale_offset.clone(),
            zero_point.clone(),
            zero_point_high.clone(),
            rows.clone(),
            qmin,
            qmax,
            view,
            grad_factor,
            with_offset,
            zero_point_from_range,
        );
        match RowsBackward
            .prepare::<C>([x_node, scale_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = RowsState {
                    x,
                    rows,
                    scale,
                    scale_offset,
                    with_offset,
                    zero_point,
                    zero_point_high,
                    zero_point_from_range,
                    range: (qmin, qmax),
                    view,
                    grad_factor,
                };
                prep.finish(state, dequantized)
            }
            OpsKind::UnTracked(prep) => prep.finish(dequantized),
        }
    }

    fn lsq_backward_rows(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        rows: IntTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, ds) = B::lsq_backward_rows(
            Self::inner(grad),
            Self::inner(x),
            Self::inner(scale),
            Self::inner(scale_offset),
            Self::inner(zero_point),
            Self::inner(zero_point_high),
            rows,
            qmin,
            qmax,
            view,
            grad_factor,
            with_offset,
            zero_point_from_range,
        );
        (Self::from_inner(dx), Self::from_inner(ds))
    }

    fn observe_fake_quant_bias(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_low: FloatTensor<Self>,
        input_high: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        rule: ObserveRule,
        input_rule: StepRule,
        limit: f32,
    ) -> (Range<Self>, (FloatTensor<Self>, FloatTensor<Self>)) {
        let (x, x_node) = x.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let ((min, max), (dequantized, rounded)) = B::observe_fake_quant_bias(
            x,
            Self::inner(min),
            Self::inner(max),
            bias,
            Self::inner(input_low),
            Self::inner(input_high),
            view,
            per_group,
            num_params,
            rule,
            input_rule,
            limit,
        );
        // The new range holds every element of the weight, and the bias is rounded: both
        // gradients pass straight through.
        let dequantized = StraightThrough
            .prepare::<C>([x_node])
            .compute_bound()
            .stateless(dequantized);
        let rounded = StraightThrough
            .prepare::<C>([bias_node])
            .compute_bound()
            .stateless(rounded);
        (
            (Self::from_inner(min), Self::from_inner(max)),
            (dequantized, rounded),
        )
    }

    fn round_to_step_product(
        x: FloatTensor<Self>,
        a_low: FloatTensor<Self>,
        a_high: FloatTensor<Self>,
        b_low: FloatTensor<Self>,
        b_high: FloatTensor<Self>,
        a_rule: StepRule,
        b_rule: StepRule,
        limit: f32,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let rounded = B::round_to_step_product(
            x,
            Self::inner(a_low),
            Self::inner(a_high),
            Self::inner(b_low),
            Self::inner(b_high),
            a_rule,
            b_rule,
            limit,
        );
        StraightThrough
            .prepare::<C>([x_node])
            .compute_bound()
            .stateless(rounded)
    }
}
