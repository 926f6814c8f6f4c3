//! The launches of the elementwise fake-quant kernels.

use burn::backend::DType;
use burn_cubecl::tensor::CubeTensor;

use super::bias::{BiasArgs, BiasFold};
use super::grid::Grid;
use super::kernels;
use super::layout::{ViewLayout, elementwise};
use super::tensors::{empty, empty_like, f32_elements, strided};

/// The fake-quantized values of `x` viewed as `view`, into a fresh tensor of that shape.
pub(super) fn launch_fake_quant(
    x: CubeTensor,
    grid: Grid,
    view: [usize; 4],
    per_group: bool,
) -> CubeTensor {
    launch_fake_quant_with(x, grid, view, per_group, None).0
}

/// [`launch_fake_quant`] that, with `bias` (a learned scale's grid, no rows), also rounds the
/// layer's bias at `s_w · s_x` in the same launch (returned second; `bias` needs one parameter
/// per element or one for all, and no more elements than `x`).
pub(super) fn launch_fake_quant_with(
    x: CubeTensor,
    grid: Grid,
    view: [usize; 4],
    per_group: bool,
    bias: Option<BiasFold>,
) -> (CubeTensor, Option<CubeTensor>) {
    let x = f32_elements(x, "the input");
    let layout = ViewLayout::new(view, per_group, grid.num_params());
    let out = empty_like(&x);
    let strided = strided(&[&x]);
    let (count, dim) = elementwise(&x, layout.n);
    let (offset, with_offset) = grid.offset_arg();
    let (high, from_range) = grid.zero_point_high_arg();
    let (rows, with_rows) = grid.rows_arg();
    let bias_out = bias
        .as_ref()
        .map(|fold| empty(&x, [fold.bias.meta.shape().num_elements()], DType::F32));
    let args = BiasArgs::new(bias, &x, bias_out.as_ref().unwrap_or(&out));
    kernels::fake_quant::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        grid.scale.into_tensor_arg(),
        offset.into_tensor_arg(),
        grid.zero_point.into_tensor_arg(),
        high.into_tensor_arg(),
        rows.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        args.bias.into_tensor_arg(),
        args.input_low.into_tensor_arg(),
        args.input_high.into_tensor_arg(),
        args.out.into_tensor_arg(),
        layout.n,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        args.steps,
        layout.mode,
        strided,
        with_offset,
        from_range,
        with_rows,
        args.with_bias,
        args.kinds.0,
        args.kinds.1,
    );
    (out, bias_out)
}

/// The input gradient of fixed-scale fake quantization, `grad · mask`, the mask recomputed from
/// `x` on `grid` (whose `x` is viewed by `layout`): into a fresh tensor in `grad`'s layout.
pub(super) fn launch_masked_grad(
    grad: CubeTensor,
    x: CubeTensor,
    grid: Grid,
    layout: ViewLayout,
) -> CubeTensor {
    let dx = empty_like(&grad);
    let strided = strided(&[&grad, &x]);
    let (count, dim) = elementwise(&x, layout.n);
    kernels::masked_grad::launch(
        &x.client.clone(),
        count,
        dim,
        grad.into_tensor_arg(),
        x.into_tensor_arg(),
        grid.scale.into_tensor_arg(),
        grid.zero_point.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        layout.n,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        layout.mode,
        strided,
    );
    dx
}

/// Fixed-scale fake quantization of `x` viewed as `view` on `grid` and its clip mask (one bit per
/// element, 32 to a word): `(dq, mask)`.
pub(super) fn launch_fake_quant_with_mask(
    x: CubeTensor,
    grid: Grid,
    view: [usize; 4],
    per_group: bool,
) -> (CubeTensor, CubeTensor) {
    let x = f32_elements(x, "the input");
    let layout = ViewLayout::new(view, per_group, grid.num_params());
    let words = layout.n.div_ceil(32);
    let dq = empty_like(&x);
    let strided = strided(&[&x]);
    let mask = empty(&x, [words], DType::U32);
    let (count, dim) = elementwise(&x, words);
    kernels::fake_quant_with_mask::launch(
        &x.client.clone(),
        count,
        dim,
        x.into_tensor_arg(),
        grid.scale.into_tensor_arg(),
        grid.zero_point.into_tensor_arg(),
        dq.clone().into_tensor_arg(),
        mask.clone().into_tensor_arg(),
        layout.n,
        words,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        layout.mode,
        strided,
    );
    (dq, mask)
}

/// `grad · mask` for a mask from [`launch_fake_quant_with_mask`], in `grad`'s layout.
pub(super) fn launch_apply_mask(grad: CubeTensor, mask: CubeTensor) -> CubeTensor {
    let grad = f32_elements(grad, "the gradient");
    let n = grad.meta.shape().num_elements();
    let words = mask.meta.shape().num_elements();
    let out = empty_like(&grad);
    let strided = strided(&[&grad]);
    let (count, dim) = elementwise(&grad, n);
    kernels::apply_mask::launch(
        &grad.client.clone(),
        count,
        dim,
        grad.into_tensor_arg(),
        mask.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        n,
        words,
        strided,
    );
    out
}
