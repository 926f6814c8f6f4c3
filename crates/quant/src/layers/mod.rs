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
mod linear_product;
mod quant_conv2d;
mod quant_embedding;
mod quant_linear;
mod quant_lstm;

pub use conv_bn2d::*;
pub use layer_quant::*;
pub use quant_conv2d::*;
pub use quant_embedding::*;
pub use quant_linear::*;
pub use quant_lstm::*;

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::math::StepSource;
use crate::qat::adaround_site::Site;
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
/// producer has one step in force (`input`, from [`bias_input_step`]) and the weight quantizer
/// its grid; otherwise the float bias. Without it, a 4-bit model's bias rounding alone flips
/// output codes the engine computes differently from the trained model. Layers call
/// [`weight_and_bias`], which has the weight's launch round it where it can.
fn integer_bias(
    bias: Tensor<1>,
    input: Option<&StepSource>,
    weight: Option<&Quantizer>,
) -> Tensor<1> {
    let (Some(input), Some(weight)) = (input, weight) else {
        return bias;
    };
    if !weight.grid_ready(bias.device().is_autodiff()) {
        return bias;
    }
    crate::math::round_to_step_product_ste(bias, &weight.step_source(), Some(input))
}

/// The step of the input quantizer an integer bias is rounded with: `input`'s, when it has one
/// step (per-tensor) and its grid is in force.
fn bias_input_step(input: Option<&Quantizer>, on_autodiff: bool) -> Option<StepSource> {
    let input = input?;
    let per_tensor = input.config.spec.granularity == crate::Granularity::PerTensor;
    (per_tensor && input.grid_ready(on_autodiff)).then(|| input.step_source())
}

/// A layer's weight through its quantizer (`weight.val()`) and its bias as the integer engine
/// adds it ([`integer_bias`], the input produced by `producer`): on a GPU the weight quantizer's
/// launch rounds the bias too, where the rounding took a launch of its own. `bias` is the
/// layer's bias parameter, which also names the layer to an AdaRound pass.
pub(crate) fn weight_and_bias<const D: usize>(
    weight: &Param<Tensor<D>>,
    bias: Option<&Param<Tensor<1>>>,
    producer: Option<&Quantizer>,
) -> (Tensor<D>, Option<Tensor<1>>) {
    match (weight.reparameterization::<Quantizer>(), bias) {
        (Some(quant), Some(bias)) => {
            let site = crate::qat::adaround_site::active().then(|| Site {
                layer: bias.id,
                weight: weight.id,
                fold: None,
            });
            let (weight, bias) =
                quantized_weight_and_bias(quant, weight.base(), bias.val(), producer, site);
            (weight, Some(bias))
        }
        // Without a weight quantizer the bias stays float.
        (_, bias) => (weight.val(), bias.map(|b| b.val())),
    }
}

/// [`weight_and_bias`] of a float `weight` (a parameter's base value, a BN-folded weight) and its
/// quantizer `quant`; `site` says where the weight lives while an AdaRound pass runs, which
/// then may round it itself (the weight it learns the rounding of).
pub(crate) fn quantized_weight_and_bias<const D: usize>(
    quant: &Quantizer,
    weight: Tensor<D>,
    bias: Tensor<1>,
    producer: Option<&Quantizer>,
    site: Option<Site>,
) -> (Tensor<D>, Tensor<1>) {
    let input = bias_input_step(producer, bias.device().is_autodiff());
    if let Some(rounded) =
        site.and_then(|site| crate::qat::adaround_site::rounded_weight(site, quant, &weight))
    {
        return (rounded, integer_bias(bias, input.as_ref(), Some(quant)));
    }
    let Some(input) = input else {
        return (quant.forward_weight(weight), bias);
    };
    match quant.forward_weight_with_bias(weight, bias.clone(), &input) {
        (weight, Some(rounded)) => (weight, rounded),
        (weight, None) => (weight, integer_bias(bias, Some(&input), Some(quant))),
    }
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};

    use super::*;
    use crate::testing::{kernel_devices, values};
    use crate::{Granularity, QuantLinear, QuantLinearConfig};

    /// Weight quantizers whose launch may round the bias too, with the layer's shape: W8A8's
    /// (its observer kernel, one parameter per output channel), W4's (LSQ: its fake-quant
    /// kernel), each also per tensor (one step for every bias element) and per group (not one
    /// step per bias element: left to the two ops); W8 with channels past a reduction cube
    /// (`d_in` = 4100: left to the two ops too); and a layer with more outputs than weights per
    /// output (each bias element still has its thread in the LSQ kernel).
    fn weight_quantizers() -> Vec<(String, QuantizerConfig, [usize; 2])> {
        let w8 = QuantMapping::w8a8().weight.expect("W8A8 quantizes weights");
        let w4 = QuantMapping::w4a4().weight.expect("W4A4 quantizes weights");
        let with = |config: &QuantizerConfig, granularity| {
            let mut config = config.clone();
            config.spec.granularity = granularity;
            config
        };
        let per_group = Granularity::PerGroup {
            axis: None,
            group_size: 16,
        };
        let mut cases = Vec::new();
        for (bits, config) in [("W8", &w8), ("W4", &w4)] {
            cases.extend([
                (format!("{bits} per channel"), config.clone(), [48, 20]),
                (
                    format!("{bits} per tensor"),
                    with(config, Granularity::PerTensor),
                    [48, 20],
                ),
                (
                    format!("{bits} per group"),
                    with(config, per_group.clone()),
                    [48, 20],
                ),
                (format!("{bits} wide"), config.clone(), [2, 300]),
            ]);
        }
        cases.push(("W8 channels past a cube".into(), w8, [4100, 3]));
        cases
    }

    /// The bias rounded in the weight quantizer's launch ([`weight_and_bias`]; one kernel on
    /// wgpu) against the weight's quantizer and then [`integer_bias`] (two): the same weight,
    /// bias, observer range and gradients (the weight's, the bias's and an LSQ scale's), bit for
    /// bit. The W8 observer takes each weight's own range and an LSQ quantizer observes only
    /// its first call, so quantizing the same weight twice leaves the same state.
    #[test]
    fn bias_rounded_in_the_weight_launch_equals_rounding_it_after() {
        for device in kernel_devices() {
            for (name, weight_config, [d_in, d_out]) in weight_quantizers() {
                let name = format!("{device:?}, {name}");
                let producer = QuantMapping::w8a8()
                    .activation
                    .expect("W8A8 quantizes activations")
                    .init(LayerKind::Activation, &[1, d_in], &device)
                    .expect("input quantizer");
                let x = Tensor::<2>::random([8, d_in], Distribution::Normal(0.0, 1.0), &device);
                let _ = producer.forward(x);
                let layer: QuantLinear = QuantLinearConfig::new(d_in, d_out)
                    .with_weight(Some(weight_config))
                    .init(&device);
                let quant = layer.weight.reparameterization::<Quantizer>();
                let bias = layer.bias.as_ref().expect("a bias").val();
                // The weight's observer has seen it once, as in any step after the first.
                let _ = layer.weight.val();
                let range = || {
                    let quant = quant.expect("a weight quantizer");
                    let (min, max) = quant.observer.range();
                    let scale = quant.learned_scale.as_ref().map(|s| values(s.value()));
                    (values(min), values(max), scale)
                };
                let before = range();
                let (w_fused, b_fused) =
                    weight_and_bias(&layer.weight, layer.bias.as_ref(), Some(&producer));
                let b_fused = b_fused.expect("a bias");
                assert_eq!(range(), before, "{name}: the observer's range, one launch");
                let w_two = layer.weight.val();
                let input = bias_input_step(Some(&producer), true);
                let b_two = integer_bias(bias.clone(), input.as_ref(), quant);
                assert_eq!(range(), before, "{name}: the observer's range, two");
                assert_eq!(
                    values(w_fused.clone()),
                    values(w_two.clone()),
                    "{name}: weight"
                );
                assert_eq!(
                    values(b_fused.clone()),
                    values(b_two.clone()),
                    "{name}: bias"
                );
                assert_ne!(
                    values(b_two.clone()),
                    values(bias.clone()),
                    "{name}: bias rounded"
                );
                let dw = Tensor::<2>::random([d_in, d_out], Distribution::Default, &device);
                let db = Tensor::<1>::random([d_out], Distribution::Default, &device);
                let quant = quant.expect("a weight quantizer");
                let grads_of = |w: Tensor<2>, b: Tensor<1>| {
                    let grads = ((w * dw.clone()).sum() + (b * db.clone()).sum()).backward();
                    let base = layer.weight.base().grad(&grads).expect("weight gradient");
                    let bias = bias.grad(&grads).expect("bias gradient");
                    let scale = quant
                        .learned_scale
                        .as_ref()
                        .map(|scale| values(scale.delta.val().grad(&grads).expect("ds")));
                    (values(base), values(bias), scale)
                };
                let (dw_fused, db_fused, ds_fused) = grads_of(w_fused, b_fused);
                let (dw_two, db_two, ds_two) = grads_of(w_two, b_two);
                assert_eq!(dw_fused, dw_two, "{name}: weight gradient");
                assert_eq!(db_fused, db_two, "{name}: bias gradient");
                assert_eq!(ds_fused, ds_two, "{name}: scale gradient");
                assert_eq!(db_fused, values(db.clone()), "{name}: straight through");
            }
        }
    }
}
