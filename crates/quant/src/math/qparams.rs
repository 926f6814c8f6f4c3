//! Scale and zero point from an observed range, exactly as PyTorch's `ObserverBase._calculate_qparams`.
//!
//! The range is first widened to include 0 (so 0 is exactly representable). Symmetric:
//! `scale = max(|min|, |max|) / ((qmax - qmin) / 2)`, zero point fixed. Affine:
//! `scale = (max - min) / (qmax - qmin)`, `zero_point = clamp(qmin - round(min / scale), qmin, qmax)`.
//! Scales are clamped below by `f32::EPSILON`, like PyTorch's `eps`.

use burn::tensor::Tensor;

use crate::QuantSpec;

/// Smallest scale any quantizer produces (PyTorch's `torch.finfo(torch.float32).eps`).
pub const SCALE_EPS: f64 = f32::EPSILON as f64;

/// Quantization parameters per scale: `scale` and the integer-valued `zero_point`, both `[n]`.
#[derive(Debug, Clone)]
pub struct QParams {
    /// Step size between adjacent codes.
    pub scale: Tensor<1>,
    /// The code that represents real 0 (integer values stored as floats).
    pub zero_point: Tensor<1>,
}

/// Computes [`QParams`] from per-parameter `min` and `max` (`[n]` each), following PyTorch.
pub fn qparams_from_range(min: Tensor<1>, max: Tensor<1>, spec: &QuantSpec) -> QParams {
    let (qmin, qmax) = (spec.qmin() as f64, spec.qmax() as f64);
    let scale = scale_from_range(min.clone(), max, spec);
    let zero_point = if spec.symmetric {
        scale
            .zeros_like()
            .add_scalar(spec.symmetric_zero_point() as f64)
    } else {
        (min.clamp_max(0.0)
            .div(scale.clone())
            .round()
            .neg()
            .add_scalar(qmin))
        .clamp(qmin, qmax)
    };
    QParams { scale, zero_point }
}

/// The scale alone of [`qparams_from_range`]: what a consumer of the grid step needs (the integer
/// bias's accumulator step), without the zero point's rounding (a kernel launch of its own on a
/// GPU, where burn-fusion does not fuse `round`).
pub fn scale_from_range(min: Tensor<1>, max: Tensor<1>, spec: &QuantSpec) -> Tensor<1> {
    super::StepSource::range(min, max, spec).step()
}
