//! What the models share when they lower themselves to the engine's integer program.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use engine::{Artifact, ProgramBuilder};
use quant::QuantError;

/// A `MaxPool2d` on codes (no padding, no dilation: the pools these models use).
pub(crate) fn max_pool(
    b: &mut ProgramBuilder,
    pool: &MaxPool2d,
    x: usize,
    path: &str,
) -> Result<usize, QuantError> {
    let plain = matches!(pool.padding, PaddingConfig2d::Valid)
        && pool.dilation == [1, 1]
        && !pool.ceil_mode;
    if !plain {
        return Err(QuantError::field(
            path,
            "cannot export: padded, dilated or ceil-mode max-pooling",
        ));
    }
    Ok(b.max_pool2d(x, pool.kernel_size, pool.stride))
}

/// The validated artifact; an inconsistency is reported as the model's.
pub(crate) fn finish(b: ProgramBuilder, meta: serde_json::Value) -> Result<Artifact, QuantError> {
    b.finish(meta)
        .map_err(|e| QuantError::field("program", format!("cannot export: {e}")))
}
