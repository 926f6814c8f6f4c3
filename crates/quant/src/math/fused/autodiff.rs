//! The autodiff side of [`FakeQuantKernels`]: LSQ / clipped-STE fake quantization as one tracked
//! op whose backward is one kernel, the integer bias's rounding as one whose backward is the
//! identity; every other kernel passes straight through to the inner backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, TensorMetadata};

use burn::tensor::Shape;

use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, SCALE_FLOOR, StepRule,
    lsq_fake_quant_then_round_bias,
};

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant`]: with a learned scale one kernel
/// recomputes the mask and `∂x̂/∂s` from the saved input, giving `dx = grad · mask` and
/// `ds = Σ grad · ∂x̂/∂s` per parameter; with a fixed scale, `dx = grad · mask` from the kept mask.
#[derive(Debug)]
struct FakeQuantBackward;

/// What the backward kernel needs: the input, the grid and the view layout.
#[derive(Debug, Clone)]
struct FakeQuantState<P> {
    x: P,
    scale: P,
    /// Added to `scale` when `with_offset` (a learned scale's anchor).
    scale_offset: P,
    with_offset: bool,
    zero_point: P,
    /// With `zero_point_from_range`, `zero_point` and this are a range's minima and maxima.
    zero_point_high: P,
    zero_point_from_range: bool,
    range: (f32, f32),
    view: [usize; 4],
    per_group: bool,
    /// Multiplies the scale gradient (LSQ's `1 / sqrt(N · Qp)`).
    grad_factor: f32,
}

/// What the backward pass keeps, by the quantizer's kind: a learned scale needs the input (its
/// gradient reads `x`); a fixed scale only the clip mask, one bit per element; a fixed scale
/// that cannot clip nothing at all (`dx = grad`).
#[derive(Debug, Clone)]
enum Saved<P, M> {
    Input(FakeQuantState<P>),
    Mask(M),
    Nothing,
}

impl<B: FakeQuantKernels> Backward<B, 3> for FakeQuantBackward {
    type State = Saved<FloatTensor<B>, IntTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [x_parent, scale_parent, zero_point_parent] = ops.parents;
        let state = match ops.state {
            Saved::Nothing => {
                if let Some(node) = x_parent {
                    grads.register::<B>(node.id, grad);
                }
                return;
            }
            Saved::Mask(mask) => {
                if let Some(node) = x_parent {
                    grads.register::<B>(node.id, B::apply_mask(grad, mask));
                }
                return;
            }
            Saved::Input(state) => state,
        };
        let FakeQuantState {
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
        } = state;
        let with_scale_grad = scale_parent.is_some();
        let with_zero_point_grad = zero_point_parent.is_some();
        let ((dx, ds), dzp) = B::fake_quant_backward(
            grad,
            x,
            scale,
            scale_offset,
            zero_point,
            zero_point_high,
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
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = scale_parent {
            grads.register::<B>(node.id, ds);
        }
        if let Some(node) = zero_point_parent {
            grads.register::<B>(node.id, dzp);
        }
    }
}

/// The backward pass of [`FakeQuantKernels::round_to_step_product`]: the gradient passes to the
/// rounded tensor untouched (the straight-through estimator), no kernel; the steps get none.
#[derive(Debug)]
struct StraightThrough;

impl<B: FakeQuantKernels> Backward<B, 1> for StraightThrough {
    type State = ();

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, grad);
        }
    }
}

/// The backward pass of [`FakeQuantKernels::observe_fake_quant`] with a kept mask: the gradient
/// masked where the freshly observed range clipped the input (the clipped straight-through
/// estimator), one kernel; the observer's outputs get none.
#[derive(Debug)]
struct ClipMasked;

impl<B: FakeQuantKernels> Backward<B, 1> for ClipMasked {
    type State = IntTensor<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ops.parents {
            grads.register::<B>(node.id, B::apply_mask(grad, ops.state));
        }
    }
}

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant_rows`]: one kernel (on a GPU, and
/// one launch that adds the lookups' scale gradients into the table's rows) gives the rows'
/// `dx = grad · mask` and the table's scale gradient.
#[derive(Debug)]
struct RowsBackward;

/// What [`RowsBackward`] needs: the looked-up rows, their indices, and the table's grid.
#[derive(Debug, Clone)]
struct RowsState<P, I> {
    x: P,
    rows: I,
    scale: P,
    scale_offset: P,
    with_offset: bool,
    zero_point: P,
    zero_point_high: P,
    zero_point_from_range: bool,
    range: (f32, f32),
    view: [usize; 4],
    grad_factor: f32,
}

impl<B: FakeQuantKernels> Backward<B, 2> for RowsBackward {
    type State = RowsState<FloatTensor<B>, IntTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let [x_parent, scale_parent] = ops.parents;
        let s = ops.state;
        let (dx, ds) = B::lsq_backward_rows(
            grad,
            s.x,
            s.scale,
            s.scale_offset,
            s.zero_point,
            s.zero_point_high,
            s.rows,
            s.range.0,
            s.range.1,
            s.view,
            s.grad_factor,
            s.with_offset,
            s.zero_point_from_range,
        );
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = scale_parent {
            grads.register::<B>(node.id, ds);
        }
    }
}

/// The zero point of the range `(min, max)` (`[n]` each) on the grid `qmin..=qmax`, by the
/// observer kernel folding the range into itself (a frozen learned scale's fixed-scale path,
/// off the training hot path).
fn zero_point_of_range<B: FakeQuantKernels>(
    min: FloatTensor<B>,
    max: FloatTensor<B>,
    qmin: f32,
    qmax: f32,
) -> FloatTensor<B> {
    let n = min.shape().num_elements();
    let view = [1, n, 1, 1];
    let x = B::float_reshape(min.clone(), Shape::new(view));
    // An affine rule that folds with a moving-average constant of 0: a finite range stays as it is.
    let (_, (_, zero_point)) = B::observe_range(
        x,
        min,
        max,
        view,
        false,
        n,
        false,
        0.0,
        qmin,
        qmax,
        0.0,
        SCALE_FLOOR,
    );
    zero_point
}

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
