//! The autodiff side of [`FakeQuantKernels`]: LSQ / clipped-STE fake quantization as one tracked
//! op whose backward is one kernel; every other kernel passes straight through to the inner backend.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::FakeQuantKernels;

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant`]: one kernel recomputes the mask and
/// `∂x̂/∂s` from the saved input, giving `dx = grad · mask` and `ds = Σ grad · ∂x̂/∂s` per parameter.
#[derive(Debug)]
struct FakeQuantBackward;

/// What the backward kernel needs: the input, the grid and the view layout.
#[derive(Debug, Clone)]
struct FakeQuantState<P> {
    x: P,
    scale: P,
    zero_point: P,
    range: (f32, f32),
    view: [usize; 4],
    per_group: bool,
    /// No element can fall outside the grid, so `dx = grad` (no kernel).
    clip_free: bool,
    /// Multiplies the scale gradient (LSQ's `1 / sqrt(N · Qp)`).
    grad_factor: f32,
}

impl<B: FakeQuantKernels> Backward<B, 2> for FakeQuantBackward {
    type State = FakeQuantState<FloatTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let FakeQuantState {
            x,
            scale,
            zero_point,
            range: (qmin, qmax),
            view,
            per_group,
            clip_free,
            grad_factor,
        } = ops.state;
        let with_scale_grad = ops.parents[1].is_some();
        let grad = grads.consume::<B>(&ops.node);
        if clip_free && !with_scale_grad {
            if let Some(node) = &ops.parents[0] {
                grads.register::<B>(node.id, grad);
            }
            return;
        }
        let (dx, ds) = B::fake_quant_backward(
            grad,
            x,
            scale,
            zero_point,
            qmin,
            qmax,
            view,
            per_group,
            with_scale_grad,
        );
        let [x_parent, scale_parent] = ops.parents;
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = scale_parent {
            let ds = if grad_factor == 1.0 {
                ds
            } else {
                B::float_mul_scalar(ds, grad_factor.into())
            };
            grads.register::<B>(node.id, ds);
        }
    }
}

impl<B: FakeQuantKernels, C: CheckpointStrategy> FakeQuantKernels for Autodiff<B, C> {
    fn fake_quant_parts(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        parts: usize,
    ) -> FloatTensor<Self> {
        let out = B::fake_quant_parts(
            Self::inner(x),
            Self::inner(scale),
            Self::inner(zero_point),
            qmin,
            qmax,
            view,
            per_group,
            parts,
        );
        Self::from_inner(out)
    }

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

    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (grad, x, scale, zero_point) = (
            Self::inner(grad),
            Self::inner(x),
            Self::inner(scale),
            Self::inner(zero_point),
        );
        let (dx, ds) = B::fake_quant_backward(
            grad,
            x,
            scale,
            zero_point,
            qmin,
            qmax,
            view,
            per_group,
            with_scale_grad,
        );
        (Self::from_inner(dx), Self::from_inner(ds))
    }

    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        clip_free: bool,
        grad_factor: f32,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let zero_point = Self::inner(zero_point);
        let dequantized = B::lsq_fake_quant(
            x.clone(),
            scale.clone(),
            zero_point.clone(),
            qmin,
            qmax,
            view,
            per_group,
            clip_free,
            grad_factor,
        );
        match FakeQuantBackward
            .prepare::<C>([x_node, scale_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = FakeQuantState {
                    x,
                    scale,
                    zero_point,
                    range: (qmin, qmax),
                    view,
                    per_group,
                    clip_free,
                    grad_factor,
                };
                prep.finish(state, dequantized)
            }
            OpsKind::UnTracked(prep) => prep.finish(dequantized),
        }
    }
}
