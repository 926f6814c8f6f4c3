//! PACT: parameterized clipping activation (Choi et al. 2018).
//!
//! `y = clamp(x, 0, α)` (or `clamp(x, -α, α)` signed), quantized on a uniform grid of
//! `2^b - 1` (or `2^(b-1) - 1`) steps over `[0, α]`. Backward (the paper's STE):
//! `∂ŷ/∂x = 1` inside the clip range, `∂ŷ/∂α = 1` where `x ≥ α` (`-1` where `x ≤ -α`), else 0.

use burn::tensor::{Tensor, activation::relu};

use super::no_grad;

/// PACT fake quantization of a 4-D view with a learnable clip `alpha` broadcast against it.
pub fn pact_view(x: Tensor<4>, alpha: Tensor<4>, bits: u32, signed: bool) -> Tensor<4> {
    let clipped = if signed {
        // clamp(x, -α, α) = x - relu(x - α) + relu(-x - α)
        x.clone() - relu(x.clone() - alpha.clone()) + relu(x.neg() - alpha.clone())
    } else {
        relu(x.clone()) - relu(x - alpha.clone())
    };
    let levels = if signed {
        (1u64 << (bits - 1)) - 1
    } else {
        (1u64 << bits) - 1
    } as f64;
    let step = no_grad(alpha).div_scalar(levels);
    let constant = no_grad(clipped.clone());
    let quantized = (constant.clone() / step.clone()).round() * step;
    clipped + (quantized - constant)
}

/// PACT on any tensor with one clip value `alpha` (`[1]`).
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let x = Tensor::<1>::from_floats([-1.0, 0.4, 3.0], &device);
/// let alpha = Tensor::<1>::from_floats([2.0], &device).require_grad();
/// let y = quant::pact(x, alpha.clone(), 2, false);
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![0.0, 2.0 / 3.0, 2.0]);
/// assert_eq!(alpha.grad(&y.sum().backward()).unwrap().into_scalar::<f32>(), 1.0);
/// ```
pub fn pact<const D: usize>(x: Tensor<D>, alpha: Tensor<1>, bits: u32, signed: bool) -> Tensor<D> {
    let shape = x.shape();
    let numel = shape.num_elements();
    let y = pact_view(
        x.reshape([1, 1, numel, 1]),
        alpha.reshape([1, 1, 1, 1]),
        bits,
        signed,
    );
    y.reshape(shape)
}
