//! The autodiff side of [`LinearKernels`]: a Linear product as one tracked op whose backward is
//! `dx = g · Wᵀ`, `dW = xᵀ · g` and `db = Σ_rows g`, each one kernel, each computed only when its
//! input is tracked (a frozen weight costs no `xᵀ · g`).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend};

use super::LinearKernels;

/// The saved operands: `x` when the weight's gradient is wanted, `w` when the input's is.
type Saved<B> = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

/// Registers `dx = g · wᵀ` and `dW = xᵀ · g` for the parents that are tracked.
fn register_product_grads<B: LinearKernels>(
    [x_node, w_node]: [Option<NodeId>; 2],
    (x, w): Saved<B>,
    g: &FloatTensor<B>,
    grads: &mut Gradients,
) {
    if let (Some(node), Some(w)) = (x_node, w) {
        let dx = B::matrix_product(g.clone(), B::float_swap_dims(w, 0, 1));
        grads.register::<B>(node, dx);
    }
    if let (Some(node), Some(x)) = (w_node, x) {
        let dw = B::matrix_product(B::float_swap_dims(x, 0, 1), g.clone());
        grads.register::<B>(node, dw);
    }
}

/// Backward of [`LinearKernels::linear_with_bias`].
#[derive(Debug)]
struct LinearWithBiasBackward;

impl<B: LinearKernels> Backward<B, 3> for LinearWithBiasBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<B>(&ops.node);
        let [x_node, w_node, b_node] = ops.parents;
        register_product_grads::<B>(
            [x_node, w_node].map(|n| n.map(|n| n.id)),
            ops.state,
            &g,
            grads,
        );
        if let Some(node) = b_node {
            grads.register::<B>(node.id, B::column_sums(g));
        }
    }
}

/// Backward of [`LinearKernels::matrix_product`].
#[derive(Debug)]
struct ProductBackward;

impl<B: LinearKernels> Backward<B, 2> for ProductBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<B>(&ops.node);
        let parents = ops.parents.map(|n| n.map(|n| n.id));
        register_product_grads::<B>(parents, ops.state, &g, grads);
    }
}

impl<B: LinearKernels, C: CheckpointStrategy> LinearKernels for Autodiff<B, C> {
    fn linear_with_bias(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (x.is_tracked(), w.is_tracked());
        let (x, x_node) = x.into_parts();
        let (w, w_node) = w.into_parts();
        let (b, b_node) = b.into_parts();
        let saved = (w_tracked.then(|| x.clone()), x_tracked.then(|| w.clone()));
        let y = B::linear_with_bias(x, w, b);
        match LinearWithBiasBackward
            .prepare::<C>([x_node, w_node, b_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn matrix_product(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x_tracked, w_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        let (x, x_node) = lhs.into_parts();
        let (w, w_node) = rhs.into_parts();
        let saved = (w_tracked.then(|| x.clone()), x_tracked.then(|| w.clone()));
        let y = B::matrix_product(x, w);
        match ProductBackward
            .prepare::<C>([x_node, w_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn column_sums(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::column_sums(Self::inner(x)))
    }
}
