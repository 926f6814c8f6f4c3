//! Per-parameter reductions in as many passes as the parameters' sizes need, one launch each.

use burn::backend::DType;
use burn_cubecl::tensor::CubeTensor;

use super::kernels::{self, MIN_MAX, SUM_BOTH};
use super::layout::{REDUCE_CHUNK, ViewLayout, reduction};
use super::tensors::{empty, strided};

/// Reduction passes of `x` under `layout` (`op`: [`SUM`](kernels::SUM),
/// [`MAX_ABS`](kernels::MAX_ABS), [`MIN_MAX`]) until each parameter has at most `limit` partial
/// results left, at least one pass when `at_least_once`: one launch per pass. Returns `(low,
/// high, their layout)`; `low` holds the minima under [`MIN_MAX`] (the first sums under
/// [`SUM_BOTH`]) and is `high` otherwise.
pub(super) fn reduce_until(
    x: CubeTensor,
    layout: ViewLayout,
    op: u32,
    limit: usize,
    at_least_once: bool,
) -> (CubeTensor, CubeTensor, ViewLayout) {
    reduce_until_with(x.clone(), x, layout, op, limit, at_least_once)
}

/// [`reduce_until`] over two inputs: `low_in` feeds the minima ([`MIN_MAX`]) or the first sum
/// ([`SUM_BOTH`]), `high_in` everything else.
pub(super) fn reduce_until_with(
    low_in: CubeTensor,
    high_in: CubeTensor,
    layout: ViewLayout,
    op: u32,
    limit: usize,
    at_least_once: bool,
) -> (CubeTensor, CubeTensor, ViewLayout) {
    let (mut low_in, mut high_in, mut layout) = (low_in, high_in, layout);
    let two_outputs = op == MIN_MAX || op == SUM_BOTH;
    let mut first = at_least_once;
    while first || layout.per_param > limit {
        first = false;
        let chunks = layout.per_param.div_ceil(REDUCE_CHUNK).max(1);
        let cubes = layout.num_params * chunks;
        let low = empty(&high_in, [if two_outputs { cubes } else { 1 }], DType::F32);
        let high = empty(&high_in, [cubes], DType::F32);
        let (count, dim) = reduction(&high_in, cubes);
        let strided = strided(&[&low_in, &high_in]);
        kernels::reduce::launch(
            &high_in.client.clone(),
            count,
            dim,
            low_in.into_tensor_arg(),
            high_in.into_tensor_arg(),
            low.clone().into_tensor_arg(),
            high.clone().into_tensor_arg(),
            layout.per_param,
            REDUCE_CHUNK,
            chunks,
            cubes,
            layout.g,
            layout.l,
            layout.i,
            layout.mode,
            op,
            strided,
        );
        layout = ViewLayout::partials(layout.num_params, chunks);
        low_in = if two_outputs { low } else { high.clone() };
        high_in = high;
    }
    (low_in, high_in, layout)
}

/// Per-parameter `op` reduction of `x` under `layout`, `(low, high)`, `[num_params]` each.
pub(super) fn reduce_per_param(
    x: CubeTensor,
    layout: ViewLayout,
    op: u32,
) -> (CubeTensor, CubeTensor) {
    let (low, high, _) = reduce_until(x, layout, op, 1, true);
    (low, high)
}
