//! The backward passes of the tracked fake-quant ops: one kernel each (the LSQ backward, or the
//! kept clip mask applied), or the identity (a straight-through op), and what they save.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::Shape;

use super::super::{FakeQuantKernels, SCALE_FLOOR};

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant`]: with a learned scale one kernel
/// recomputes the mask and `∂x̂/∂s` from the saved input, giving `dx = grad · mask` and
/// `ds = Σ grad · ∂x̂/∂s` per parameter; with a fixed scale, `dx = grad · mask` from the kept mask.
#[derive(Debug)]
pub(super) struct FakeQuantBackward;

/// What the backward kernel needs: the input, the grid and the view layout.
#[derive(Debug, Clone)]
pub(super) struct FakeQuantState<P> {
    pub(super) x: P,
    pub(super) scale: P,
    /// Added to `scale` when `with_offset` (a learned scale's anchor).
    pub(super) scale_offset: P,
    pub(super) with_offset: bool,
    pub(super) zero_point: P,
    /// With `zero_point_from_range`, `zero_point` and this are a range's minima and maxima.
    pub(super) zero_point_high: P,
    pub(super) zero_point_from_range: bool,
    pub(super) range: (f32, f32),
    pub(super) view: [usize; 4],
    pub(super) per_group: bool,
    /// Multiplies the scale gradient (LSQ's `1 / sqrt(N · Qp)`).
    pub(super) grad_factor: f32,
}

/// What the backward pass keeps, by the quantizer's kind: a learned scale needs the input (its
/// gradient reads `x`); a fixed scale only the clip mask, one bit per element; a fixed scale
/// that cannot clip nothing at all (`dx = grad`).
#[derive(Debug, Clone)]
pub(super) enum Saved<P, M> {
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
pub(super) struct StraightThrough;

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
pub(super) struct ClipMasked;

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
pub(super) struct RowsBackward;

/// What [`RowsBackward`] needs: the looked-up rows, their indices, and the table's grid.
#[derive(Debug, Clone)]
pub(super) struct RowsState<P, I> {
    pub(super) x: P,
    pub(super) rows: I,
    pub(super) scale: P,
    pub(super) scale_offset: P,
    pub(super) with_offset: bool,
    pub(super) zero_point: P,
    pub(super) zero_point_high: P,
    pub(super) zero_point_from_range: bool,
    pub(super) range: (f32, f32),
    pub(super) view: [usize; 4],
    pub(super) grad_factor: f32,
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
pub(super) fn zero_point_of_range<B: FakeQuantKernels>(
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
