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

/// Identity in the forward pass; multiplies the gradient by `factor` in the backward pass.
///
/// LSQ scales the step-size gradient by `1 / sqrt(N · Qp)` so that scales and weights learn at
/// comparable rates (Esser et al. 2019, §2.2).
pub fn grad_scale<const D: usize>(x: Tensor<D>, factor: f64) -> Tensor<D> {
    if factor == 1.0 {
        return x;
    }
    let scaled = x.clone().mul_scalar(factor);
    (x - scaled.clone()).detach() + scaled
}
