//! Fake quantization with given (observed) scale and zero point and the clipped straight-through
//! estimator: PyTorch's `torch.fake_quantize_per_tensor_affine` and
//! `torch.fake_quantize_per_channel_affine`.
//!
//! Forward: `x̂ = (clamp(round(x · (1/scale)) + zp, qmin, qmax) - zp) · scale`, round half to even.
//! Backward: `∂x̂/∂x = 1` where `qmin ≤ round(x/scale) + zp ≤ qmax`, else 0. Scale and zero
//! point get no gradient here (see [`crate::fake_quantize_learnable`] for learned ones).

use burn::tensor::Tensor;

use super::fused::fused_lsq;
use super::no_grad;
use crate::{Granularity, ParamLayout};

/// Fake-quantizes a 4-D view against broadcastable `scale` and `zero_point` (detached inside).
///
/// This is the kernel behind every fixed-parameter quantizer; see the module docs for the math.
pub fn fake_quantize_view(
    x: Tensor<4>,
    scale: Tensor<4>,
    zero_point: Tensor<4>,
    qmin: i32,
    qmax: i32,
) -> Tensor<4> {
    fake_quantize_view_with(x, scale, Some(zero_point), qmin, qmax, true)
}

/// [`fake_quantize_view`] with two shortcuts for hot paths, both exact:
/// - `zero_point: None` means a zero point of 0 (symmetric signed grids): no add/subtract passes;
/// - `clip_possible: false` promises that no value falls outside the grid (the scale was just
///   computed from this tensor's own symmetric range on a narrow grid), so the gradient is the
///   identity and no clip mask is computed.
pub fn fake_quantize_view_with(
    x: Tensor<4>,
    scale: Tensor<4>,
    zero_point: Option<Tensor<4>>,
    qmin: i32,
    qmax: i32,
    clip_possible: bool,
) -> Tensor<4> {
    let (qmin, qmax) = (qmin as f64, qmax as f64);
    let scale = no_grad(scale);
    let zero_point = zero_point.map(no_grad);
    let constant = no_grad(x.clone());
    let scaled = (constant.clone() * scale.clone().recip()).round();
    let codes = match &zero_point {
        Some(zp) => scaled + zp.clone(),
        None => scaled,
    };
    let clamped = codes.clone().clamp(qmin, qmax);
    let dequantized = match zero_point {
        Some(zp) => (clamped - zp) * scale,
        None => clamped * scale,
    };
    if !x.is_tracked() {
        return dequantized;
    }
    if !clip_possible {
        return dequantized + (x - constant);
    }
    let in_range = codes
        .clone()
        .greater_equal_elem(qmin)
        .bool_and(codes.lower_equal_elem(qmax))
        .float();
    // Forward: exactly `dequantized`; backward: the incoming gradient masked to the clip range.
    dequantized + (x - constant) * in_range
}

/// Fixed-parameter fake quantization of a view laid out by `layout`, with flat `[n]` parameters:
/// the fused Flex kernel where available, [`fake_quantize_view_with`] elsewhere (same values and
/// gradients). `zero_point: None` means 0; see [`fake_quantize_view_with`] for `clip_possible`.
pub fn fake_quantize_layout(
    x: Tensor<4>,
    layout: &ParamLayout,
    scale: Tensor<1>,
    zero_point: Option<Tensor<1>>,
    (qmin, qmax): (i32, i32),
    clip_possible: bool,
) -> Tensor<4> {
    let zp_or_zero = || zero_point.clone().unwrap_or_else(|| scale.zeros_like());
    let per_group = layout.is_per_group();
    // Where the kernels run: a custom autodiff op when tracked (one forward and one backward
    // pass, the mask recomputed there or kept as bits), one forward pass otherwise. Elsewhere:
    // composite ops.
    let fused = fused_lsq(
        &x,
        no_grad(scale.clone()),
        None,
        no_grad(zp_or_zero()),
        None,
        (qmin, qmax),
        per_group,
        !clip_possible,
        1.0,
    );
    fused.unwrap_or_else(|| {
        let zero_point = zero_point.map(|zp| layout.broadcast(zp));
        fake_quantize_view_with(
            x,
            layout.broadcast(scale),
            zero_point,
            qmin,
            qmax,
            clip_possible,
        )
    })
}

/// `torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)`.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let x = Tensor::<1>::from_floats([-1.0, 0.26, 0.74, 2.0], &Device::flex());
/// let y = quant::fake_quantize_per_tensor_affine(x, 0.5, 0, -2, 1);
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![-1.0, 0.5, 0.5, 0.5]);
/// ```
pub fn fake_quantize_per_tensor_affine<const D: usize>(
    x: Tensor<D>,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    let device = x.device();
    let scale = Tensor::<1>::from_floats([scale], &device);
    let zero_point = Tensor::<1>::from_floats([zero_point as f32], &device);
    fake_quantize_with_layout(x, scale, zero_point, &Granularity::PerTensor, qmin, qmax)
}

/// `torch.fake_quantize_per_channel_affine(x, scale, zero_point, axis, qmin, qmax)`, with
/// `scale` and `zero_point` of length `x.dims()[axis]`.
pub fn fake_quantize_per_channel_affine<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    axis: usize,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    let granularity = Granularity::PerChannel { axis: Some(axis) };
    fake_quantize_with_layout(x, scale, zero_point, &granularity, qmin, qmax)
}

/// Per-group fake quantization (torchao's `PerGroup`): one `scale` / `zero_point` per
/// `group_size` consecutive elements along `axis`, for every index of the other axes, flattened
/// in row-major order of `[outer, groups, inner]` (see [`ParamLayout`]).
pub fn fake_quantize_per_group_affine<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    axis: usize,
    group_size: usize,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    let granularity = Granularity::PerGroup {
        axis: Some(axis),
        group_size,
    };
    fake_quantize_with_layout(x, scale, zero_point, &granularity, qmin, qmax)
}

/// Fake-quantizes `x` with flat parameters laid out by a resolved `granularity`.
fn fake_quantize_with_layout<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    granularity: &Granularity,
    qmin: i32,
    qmax: i32,
) -> Tensor<D> {
    let shape = x.shape();
    let layout = ParamLayout::new(&shape.dims::<D>(), granularity);
    let y = fake_quantize_layout(
        layout.to_view(x),
        &layout,
        scale,
        Some(zero_point),
        (qmin, qmax),
        true,
    );
    layout.from_view(y, shape)
}
