//! The autodiff side of [`TransformerKernels`]: GELU as one tracked op whose backward is one
//! kernel; the dropout mask is a constant (no gradient flows into it).

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

    fn dropout_mask(like: FloatTensor<Self>, keep: f32, key: u64) -> FloatTensor<Self> {
        Self::from_inner(B::dropout_mask(Self::inner(like), keep, key))
    }
}
