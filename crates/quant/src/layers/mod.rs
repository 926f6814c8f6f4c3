//! Drop-in quantized layers, built by `Config`s like `burn::nn`'s, with the same parameter paths
//! as the matching `burn::nn` layers, so float checkpoints load into them unchanged.
mod conv_bn2d;
mod conv_options;
mod quant_conv2d;
mod quant_embedding;
mod quant_linear;

pub use conv_bn2d::*;
pub use quant_conv2d::*;
pub use quant_embedding::*;
pub use quant_linear::*;

use burn::module::Module;
use burn::tensor::Device;

use crate::{LayerKind, QuantError, QuantMapping, Quantizer, QuantizerConfig};

/// Attaches `weight` (if any) to the `weight` parameter of a freshly built layer.
fn attach_weight_quantizer<M: Module>(
    layer: M,
    weight: &Option<QuantizerConfig>,
) -> Result<M, QuantError> {
    match weight {
        None => Ok(layer),
        Some(config) => {
            let mapping = QuantMapping::new().with_weight(Some(config.clone()));
            mapping
                .quantize_weights(layer)
                .map(|(layer, _)| layer)
                .map_err(|e| e.within("weight"))
        }
    }
}

/// Builds the optional input-activation quantizer of a layer whose inputs have `channels` on axis 1.
fn input_quantizer(
    input: &Option<QuantizerConfig>,
    shape: &[usize],
    device: &Device,
) -> Result<Option<Quantizer>, QuantError> {
    input
        .as_ref()
        .map(|config| {
            config
                .init(LayerKind::Activation, shape, device)
                .map_err(|e| e.within("input"))
        })
        .transpose()
}
