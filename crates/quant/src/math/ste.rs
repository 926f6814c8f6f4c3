//! Straight-through estimators and gradient plumbing, built from float ops and `detach`.
//!
//! Burn's `round()` has a zero gradient and its `quantize()` detaches, so every STE here is
//! `x + (f(x) - x).detach()`: forward `f(x)`, backward identity.

use burn::tensor::Tensor;

/// A value cut from the autodiff graph *and* marked as not requiring a gradient.
///
/// `detach()` alone keeps `require_grad` on a leaf parameter, so a scale computed from
/// `weight.detach()` would still be tracked and receive gradients (and cost a backward pass).
/// Observer statistics and fixed scales go through this instead.
pub fn no_grad<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.detach().set_require_grad(false)
}

/// Round half to even in the forward pass, identity gradient in the backward pass.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let x = Tensor::<1>::from_floats([0.5, 1.5, 2.2], &device).require_grad();
/// let y = quant::round_ste(x.clone());
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![0.0, 2.0, 2.0]);
/// let g = x.grad(&y.sum().backward()).unwrap();
/// assert_eq!(g.to_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0, 1.0]);
/// ```
pub fn round_ste<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() + (x.clone().round() - x).detach()
}

/// `round(x / step) · step` in the forward pass, identity gradient for `x` in the backward pass;
/// `step` (`[1]`, or one per element of `x`) is a constant and gets no gradient.
///
/// Snaps a float bias onto the integer accumulator's grid (`crate::layers` uses it for the
/// integer bias). Where the fused kernels run (Flex, CubeCL) it is one kernel and no backward
/// pass, where the composite ops cost seven launches on a GPU (burn-fusion does not fuse
/// `round`); elsewhere it is the composite [`round_ste`].
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let bias = Tensor::<1>::from_floats([0.26, -0.74, 1.0], &device).require_grad();
/// let step = Tensor::<1>::from_floats([0.5], &device);
/// let y = quant::round_to_step_ste(bias.clone(), step);
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![0.5, -0.5, 1.0]);
/// let g = bias.grad(&y.sum().backward()).unwrap();
/// assert_eq!(g.to_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0, 1.0]);
/// ```
pub fn round_to_step_ste(x: Tensor<1>, step: Tensor<1>) -> Tensor<1> {
    round_to_step_product_ste(x, &super::StepSource::given(step), None)
}

/// [`round_to_step_ste`] with the step `s_a · s_b` (`s_a` alone without `b`) given as the state
/// it is computed from: one kernel launch on the devices with fused kernels, which computes the
/// steps too (the integer bias at `s_x · s_w`: `crate::layers`); the composite ops elsewhere.
pub(crate) fn round_to_step_product_ste(
    x: Tensor<1>,
    a: &super::StepSource,
    b: Option<&super::StepSource>,
) -> Tensor<1> {
    if let Some(rounded) = super::round_to_step_product(&x, a, b) {
        return rounded;
    }
    let step = match b {
        Some(b) => a.step() * b.step(),
        None => a.step(),
    };
    round_ste(x / step.clone()) * step
}

/// Identity in the forward pass; multiplies the gradient by `factor` in the backward pass.
///
/// LSQ scales the step-size gradient by `1 / sqrt(N · Qp)` so that scales and weights learn at
/// comparable rates (Esser et al. 2019, §2.2).
///
/// The forward value is `x` exactly: `x + (x·f - x·f)`, where the usual `(x - x·f) + x·f` is an
/// ulp off for about one scale in 170, enough to move a code that sits on a rounding tie away
/// from the one the fused kernels (and the integer engine) compute with the scale itself.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// // LSQ's factor for 1024 elements per scale and 4 bits; `(s - s·f) + s·f` in f32 is an ulp
/// // below 0.0002 and 0.0008.
/// let factor = quant::lsq_grad_factor(1024, 7);
/// let s = Tensor::<1>::from_floats([0.0002, 0.0008, 0.37], &device).require_grad();
/// let y = quant::grad_scale(s.clone(), factor);
/// assert_eq!(y.to_data(), s.to_data());
/// let g = s.grad(&y.sum().backward()).unwrap();
/// assert!(g.to_data().iter::<f32>().all(|g| (g as f64 - factor).abs() < 1e-7));
/// ```
pub fn grad_scale<const D: usize>(x: Tensor<D>, factor: f64) -> Tensor<D> {
    if factor == 1.0 {
        return x;
    }
    let scaled = x.clone().mul_scalar(factor);
    x.detach() + (scaled.clone() - scaled.detach())
}
