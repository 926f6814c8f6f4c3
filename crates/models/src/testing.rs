//! Helpers shared by the models' tests.

use burn::module::Module;
use burn::tensor::Tensor;

/// Calibrates `model` on one batch (observers on, fake quantization off), then quantizes.
pub fn calibrated<M: Module, B: Clone>(model: M, batch: &B, forward: impl FnMut(&M, B)) -> M {
    quant::qat::calibrate(model, [batch.clone()], forward)
}

/// `mean |a - b| / mean |a|`: how far `b` is from `a`, relative to `a`'s magnitude.
pub fn mean_relative_gap(a: Tensor<2>, b: Tensor<2>) -> f32 {
    let gap: f32 = (a.clone() - b).abs().mean().into_scalar();
    let scale: f32 = a.abs().mean().into_scalar();
    gap / scale
}

/// Calibrates `model` on `batch`, then traces one forward pass of it as an integer program.
pub fn calibrated_trace<M: Module, B: Clone, O>(
    model: M,
    batch: &B,
    forward: impl Fn(&M, B) -> O,
) -> quant::program::ProgramReport {
    let model = calibrated(model, batch, |m, x| {
        forward(m, x);
    });
    quant::program::trace(|| forward(&model, batch.clone())).1
}
