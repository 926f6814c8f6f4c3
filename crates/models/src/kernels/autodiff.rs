//! The autodiff side of [`TransformerKernels`]: GELU as one tracked op whose backward is one
//! kernel, LayerNorm likewise (gradients of the input, `γ` and `β`) and attention's masked
//! softmax (the scores' gradient; the mask is a constant); the dropout mask is a constant too.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::TransformerKernels;

/// Backward of [`TransformerKernels::fast_gelu`]: `dx = grad · gelu'(x)` from the saved input.
#[derive(Debug)]
struct GeluBackward;

impl<B: TransformerKernels> Backward<B, 1> for GeluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = &ops.parents[0] {
            grads.register::<B>(node.id, B::fast_gelu_backward(ops.state, grad));
        }
    }
}

/// Backward of [`TransformerKernels::fast_layer_norm`] from the saved input, `γ` and `ε`: the
/// gradients of `x`, `γ` and `β`, each registered where its parent is tracked.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: TransformerKernels> Backward<B, 3> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, epsilon) = ops.state;
        let (dx, (dgamma, dbeta)) = B::fast_layer_norm_backward(x, gamma, grad, epsilon);
        let [x_node, gamma_node, beta_node] = ops.parents;
        for (node, grad) in [(x_node, dx), (gamma_node, dgamma), (beta_node, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Backward of [`TransformerKernels::fast_masked_softmax`] from the saved output and scale.
#[derive(Debug)]
struct MaskedSoftmaxBackward;

impl<B: TransformerKernels> Backward<B, 1> for MaskedSoftmaxBackward {
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = &ops.parents[0] {
            let (y, scale) = ops.state;
            grads.register::<B>(node.id, B::fast_masked_softmax_backward(y, grad, scale));
        }
    }
}

impl<B: TransformerKernels, C: CheckpointStrategy> TransformerKernels for Autodiff<B, C> {
    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let y = B::fast_gelu(x.clone());
        match GeluBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::fast_gelu_backward(Self::inner(x), Self::inner(grad)))
    }

    fn fast_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let y = B::fast_layer_norm(x.clone(), gamma.clone(), beta, epsilon);
        match LayerNormBackward
            .prepare::<C>([x_node, gamma_node, beta_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, epsilon), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fast_masked_softmax(
        scores: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (scores, node) = scores.into_parts();
        let y = B::fast_masked_softmax(scores, Self::inner(mask), scale);
        match MaskedSoftmaxBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), scale), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fast_masked_softmax_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::fast_masked_softmax_backward(
            Self::inner(y),
            Self::inner(grad),
            scale,
        ))
    }

    fn fast_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, (FloatTensor<Self>, FloatTensor<Self>)) {
        let (dx, (dgamma, dbeta)) = B::fast_layer_norm_backward(
            Self::inner(x),
            Self::inner(gamma),
            Self::inner(grad),
            epsilon,
        );
        (
            Self::from_inner(dx),
            (Self::from_inner(dgamma), Self::from_inner(dbeta)),
        )
    }

    fn dropout_mask(like: FloatTensor<Self>, keep: f32, key: u64) -> FloatTensor<Self> {
        Self::from_inner(B::dropout_mask(Self::inner(like), keep, key))
    }
}
