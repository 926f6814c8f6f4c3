//! Learned step size (LSQ, Esser et al. 2019) and learned zero point (LSQ+, Bhalgat et al. 2020):
//! PyTorch's `torch._fake_quantize_learnable_per_tensor_affine` and
//! `torch._fake_quantize_learnable_per_channel_affine`.
//!
//! Forward as [`crate::fake_quantize_per_tensor_affine`] with `zp = clamp(round(zero_point))`.
//! Gradients, with `c = round(x/s) + zp` and grad factor `g` (LSQ: `1 / sqrt(N · qmax)`):
//! - `∂x̂/∂x = 1` inside `[qmin, qmax]`, else 0;
//! - `∂x̂/∂s = g · ((x̂ - x) / s)` inside, `g · (qmin - zp)` below, `g · (qmax - zp)` above;
//! - `∂x̂/∂zp = 0` inside, `-g · s` outside.
//!
//! Autodiff derives exactly these from `(clamp(round_ste(x · (1/s)) + zp, qmin, qmax) - zp) · s`,
//! rounding before adding the zero point as PyTorch does (adding first can move a value that sits
//! a rounding error from a half-way point to the other code).

use burn::tensor::Tensor;

use super::fused::fused_lsq;
use super::{grad_scale, round_ste};
use crate::{Granularity, ParamLayout};

/// LSQ/LSQ+ on a 4-D view; `scale` and `zero_point` broadcast against it and may be tracked.
pub fn fake_quantize_learnable_view(
    x: Tensor<4>,
    scale: Tensor<4>,
    zero_point: Tensor<4>,
    qmin: i32,
    qmax: i32,
) -> Tensor<4> {
    let (qmin, qmax) = (qmin as f64, qmax as f64);
    // Round and clamp the zero point in the forward pass, pass its gradient straight through.
    let zp_code = zero_point.clone().round().clamp(qmin, qmax);
    let zero_point = zero_point.clone() + (zp_code - zero_point).detach();
    let codes = (round_ste(x * scale.clone().recip()) + zero_point.clone()).clamp(qmin, qmax);
    (codes - zero_point) * scale
}

/// Fake quantization with a learnable `scale` and `zero_point` (`[n]`, laid out by a resolved
/// `granularity`) and gradient factor `grad_factor` on both.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let x = Tensor::<1>::from_floats([0.3, -0.9], &device);
/// let s = Tensor::<1>::from_floats([0.25], &device).require_grad();
/// let zp = Tensor::<1>::from_floats([0.0], &device).require_grad();
/// let y = quant::fake_quantize_learnable(x, s.clone(), zp, &quant::Granularity::PerTensor, -2, 1, 1.0);
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![0.25, -0.5]);
/// // d/ds: inside (0.25 - 0.3) / 0.25 = -0.2; below the grid qmin - zp = -2.
/// let g = s.grad(&y.sum().backward()).unwrap().into_scalar::<f32>();
/// assert!((g - (-2.2)).abs() < 1e-5);
/// ```
pub fn fake_quantize_learnable<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    granularity: &Granularity,
    qmin: i32,
    qmax: i32,
    grad_factor: f64,
) -> Tensor<D> {
    let shape = x.shape();
    let layout = ParamLayout::new(&shape.dims::<D>(), granularity);
    let view = layout.to_view(x);
    let y =
        fake_quantize_learnable_layout(view, &layout, scale, zero_point, (qmin, qmax), grad_factor);
    layout.from_view(y, shape)
}

/// LSQ/LSQ+ on a view laid out by `layout` with flat `[n]` (possibly tracked) parameters whose
/// gradients are multiplied by `grad_factor`: the fused kernel where available (which applies
/// the factor in its backward pass), [`fake_quantize_learnable_view`] elsewhere (same values and
/// gradients). The scale is used clamped to at least `SCALE_EPS` (and gets no gradient below
/// it), inside the kernels where they run.
pub fn fake_quantize_learnable_layout(
    x: Tensor<4>,
    layout: &ParamLayout,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    (qmin, qmax): (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    if let Some(y) = fused_lsq(
        &x,
        scale.clone(),
        zero_point.clone(),
        (qmin, qmax),
        layout.is_per_group(),
        false,
        grad_factor,
    ) {
        return y;
    }
    let scale = grad_scale(scale, grad_factor).clamp_min(crate::SCALE_EPS);
    let zero_point = grad_scale(zero_point, grad_factor);
    fake_quantize_learnable_view(
        x,
        layout.broadcast(scale),
        layout.broadcast(zero_point),
        qmin,
        qmax,
    )
}

/// LSQ's gradient factor `1 / sqrt(N · qmax)` for `N` elements sharing one scale.
pub fn lsq_grad_factor(elems_per_scale: usize, qmax: i32) -> f64 {
    1.0 / ((elems_per_scale as f64) * (qmax.max(1) as f64)).sqrt()
}
