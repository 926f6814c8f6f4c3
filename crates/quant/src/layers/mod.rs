//! Drop-in quantized layers, built by `Config`s like `burn::nn`'s, with the same parameter paths
//! as the matching `burn::nn` layers, so float checkpoints load into them unchanged.
//!
//! Each layer owns the quantizer of the tensor it *produces* (`output_quant`, after an optional
//! fused ReLU, as PyTorch's `ConvBnReLU2d` observes after the ReLU), so every consumer of that
//! tensor reads the same integer codes. A layer reads its input as it comes: from an upstream
//! quantizer (the usual case), or through its own `input_quant` where the input truly is float
//! (the first layer after a float island). See `ARCHITECTURE.md`, "One quantizer per integer tensor".
mod conv_bn2d;
mod conv_options;
pub(crate) use conv_options::padding_pairs;
mod layer_quant;
mod quant_conv2d;
mod quant_embedding;
mod quant_linear;

pub use conv_bn2d::*;
pub use layer_quant::*;
pub use quant_conv2d::*;
pub use quant_embedding::*;
pub use quant_linear::*;

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::{FakeQuant, LayerKind, QuantError, QuantMapping, Quantizer, QuantizerConfig};

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
                .prepare_weights(layer)
                .map(|(layer, _)| layer)
                .map_err(|e| e.within("weight"))
        }
    }
}

/// `weight` without its quantizer (the raw trained values), keeping its id.
pub(crate) fn without_weight_quantizer<const D: usize>(
    weight: Param<Tensor<D>>,
) -> Param<Tensor<D>> {
    if weight.reparameterization::<Quantizer>().is_none() {
        return weight;
    }
    let (id, base, mapper) = weight.consume();
    Param::from_mapped_value(id, base, mapper)
}

/// Builds an optional activation quantizer named `field` for tensors shaped like `shape`
/// (trailing axes; see [`QuantizerConfig::init`]).
pub(crate) fn activation_quantizer(
    config: &Option<QuantizerConfig>,
    kind: LayerKind,
    shape: &[usize],
    device: &Device,
    field: &str,
) -> Result<Option<Quantizer>, QuantError> {
    config
        .as_ref()
        .map(|config| {
            config
                .init(kind, shape, device)
                .map_err(|e| e.within(field))
        })
        .transpose()
}

/// A representative shape of an activation with `channels` channels in the layout of `kind`
/// (`[1, c]` channels last, `[1, c, 1, 1]` NCHW), for [`QuantizerConfig::init`].
pub(crate) fn activation_shape(kind: LayerKind, channels: usize) -> Vec<usize> {
    match kind {
        LayerKind::ActivationNchw => vec![1, channels, 1, 1],
        _ => vec![1, channels],
    }
}

/// The input and output quantizers of a layer with `c_in` input and `c_out` output channels,
/// activations laid out as `kind`.
pub(crate) fn io_quantizers(
    quant: &LayerQuant,
    kind: LayerKind,
    [c_in, c_out]: [usize; 2],
    device: &Device,
) -> Result<(Option<Quantizer>, Option<Quantizer>), QuantError> {
    let input = activation_quantizer(
        &quant.input,
        kind,
        &activation_shape(kind, c_in),
        device,
        "input",
    )?;
    let output = activation_quantizer(
        &quant.output,
        kind,
        &activation_shape(kind, c_out),
        device,
        "output",
    )?;
    Ok((input, output))
}

/// `quant(x)`, or `x` without a quantizer.
pub(crate) fn quantize_opt<const D: usize>(quant: &Option<FakeQuant>, x: Tensor<D>) -> Tensor<D> {
    match quant {
        Some(quant) => quant.forward(x),
        None => x,
    }
}

/// The bias as an integer engine adds it: an int32 at the accumulator step `s_x · s_w[c]`
/// (TFLite, PyTorch's convert), rounded with a straight-through gradient — when the input's
/// producer (`input`, per-tensor) and the weight quantizer both have their grids in force;
/// otherwise the float bias. Without it, a 4-bit model's bias rounding alone flips output codes
/// the engine computes differently from the trained model.
pub(crate) fn integer_bias(
    bias: Tensor<1>,
    input: Option<&Quantizer>,
    weight: Option<&Quantizer>,
) -> Tensor<1> {
    let (Some(input), Some(weight)) = (input, weight) else {
        return bias;
    };
    let on_autodiff = bias.device().is_autodiff();
    let per_tensor = input.config.spec.granularity == crate::Granularity::PerTensor;
    if !per_tensor || !input.grid_ready(on_autodiff) || !weight.grid_ready(on_autodiff) {
        return bias;
    }
    let (weight, input) = (weight.step_source(), input.step_source());
    crate::math::round_to_step_product_ste(bias, &weight, Some(&input))
}

/// The end of a layer: the optional fused ReLU, then the output quantizer.
pub(crate) fn finish_output<const D: usize>(
    y: Tensor<D>,
    fused_relu: bool,
    output_quant: &Option<FakeQuant>,
) -> Tensor<D> {
    let y = if fused_relu { relu(y) } else { y };
    quantize_opt(output_quant, y)
}
