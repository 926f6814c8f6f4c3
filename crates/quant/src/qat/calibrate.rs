//! [`calibrate`]: post-training calibration of a model's observers.

use burn::module::Module;

use crate::control::{set_fake_quant, set_observers};

/// Runs `forward` over `batches` with every observer on and fake quantization off (so each
/// observer sees the float tensors the trained model produces), then freezes the observers and
/// turns fake quantization on: the model is post-training quantized. `forward` is the model's
/// forward pass on one batch (its output is dropped); `batches` can be any iterator, e.g.
/// `loader.iter().take(16)`.
///
/// Run it on a non-autodiff device (no gradients are needed).
pub fn calibrate<M: Module, B>(
    model: M,
    batches: impl IntoIterator<Item = B>,
    mut forward: impl FnMut(&M, B),
) -> M {
    let model = set_observers(set_fake_quant(model, false), true);
    for batch in batches {
        forward(&model, batch);
    }
    set_fake_quant(set_observers(model, false), true)
}
