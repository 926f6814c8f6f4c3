//! [`QuantConv2d`]: `y = Q_out(relu?(conv2d(x, Q_w(W)) + b))`, a drop-in for `burn::nn::conv::Conv2d`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, module::conv2d};

use super::conv_options::conv2d_options;
use super::{
    LayerQuant, attach_weight_quantizer, finish_output, io_quantizers, quantize_opt,
    weight_and_bias, without_weight_quantizer,
};
use crate::qat::layer_outputs;
use crate::{FakeQuant, LayerKind, QuantError, Quantizer, QuantizerConfig};

/// Configuration of a [`QuantConv2d`]; the convolution fields mirror `Conv2dConfig`.
#[derive(Config, Debug)]
pub struct QuantConv2dConfig {
    /// `[channels_in, channels_out]`.
    pub channels: [usize; 2],
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Stride.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Dilation.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Groups.
    #[config(default = 1)]
    pub groups: usize,
    /// Padding.
    #[config(default = "PaddingConfig2d::Valid")]
    pub padding: PaddingConfig2d,
    /// Whether the layer has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Apply ReLU before the output quantizer (a fused `ConvReLU2d`).
    #[config(default = false)]
    pub relu: bool,
    /// Weight quantizer (per-channel axis defaults to the output channels).
    pub weight: Option<QuantizerConfig>,
    /// Input quantizer, for a layer whose input is float (the network's first layer may use the
    /// model's input quantizer instead).
    pub input: Option<QuantizerConfig>,
    /// Output quantizer (per-channel axis defaults to the channels, axis 2 from the back).
    pub output: Option<QuantizerConfig>,
}

/// A 2-D convolution with fake-quantized weights and output; parameter paths as `Conv2d`.
///
/// # Shapes
/// - input `[batch, channels_in, h, w]`, output `[batch, channels_out, h_out, w_out]`.
#[derive(Module, Debug)]
pub struct QuantConv2d {
    /// `[channels_out, channels_in / groups, kh, kw]`.
    pub weight: Param<Tensor<4>>,
    /// `[channels_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Stride.
    pub stride: [usize; 2],
    /// Kernel size.
    pub kernel_size: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
    /// Padding.
    #[module(skip)]
    pub padding: PaddingConfig2d,
    /// Quantizer of a float input.
    pub input_quant: Option<FakeQuant>,
    /// Quantizer of the output.
    pub output_quant: Option<FakeQuant>,
    /// ReLU fused before the output quantizer.
    pub relu: bool,
}

impl QuantConv2dConfig {
    /// The float `burn::nn` config with the same convolution fields.
    pub fn conv_config(&self) -> Conv2dConfig {
        Conv2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(self.bias)
    }

    /// The quantizers of this config.
    pub fn layer_quant(&self) -> LayerQuant {
        LayerQuant {
            weight: self.weight.clone(),
            input: self.input.clone(),
            output: self.output.clone(),
        }
    }

    /// Builds the layer, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantConv2d, QuantError> {
        QuantConv2d::from_conv2d(self.conv_config().init(device), &self.layer_quant()).map(|c| {
            QuantConv2d {
                relu: self.relu,
                ..c
            }
        })
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantConv2d {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantConv2dConfig: {e}"))
    }
}

impl QuantConv2d {
    /// Quantizes an existing `Conv2d`, keeping its weights.
    pub fn from_conv2d(conv: Conv2d, quant: &LayerQuant) -> Result<Self, QuantError> {
        let layer = QuantConv2d {
            weight: conv.weight,
            bias: conv.bias,
            stride: conv.stride,
            kernel_size: conv.kernel_size,
            dilation: conv.dilation,
            groups: conv.groups,
            padding: conv.padding,
            input_quant: None,
            output_quant: None,
            relu: false,
        };
        layer.with_quantizers(quant)
    }

    /// Replaces the quantizers of a layer, initialising the weight quantizer from the current weights.
    pub fn with_quantizers(self, quant: &LayerQuant) -> Result<Self, QuantError> {
        let device = self.weight.lazy_device();
        let [c_out, per_group, _, _] = self.weight.lazy_shape().dims::<4>();
        let c_in = per_group * self.groups;
        let (input_quant, output_quant) =
            io_quantizers(quant, LayerKind::ActivationNchw, [c_in, c_out], &device)?;
        let layer = QuantConv2d {
            weight: without_weight_quantizer(self.weight),
            input_quant,
            output_quant,
            ..self
        };
        attach_weight_quantizer(layer, &quant.weight)
    }

    /// Applies the layer to an input whose producer is unknown: the bias stays float (see
    /// [`Self::forward_from`]).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_from(input, None)
    }

    /// Applies the layer to an input produced by the quantizer `producer` (or through this
    /// layer's own `input_quant`), adding the bias as the int32 an integer engine adds.
    pub fn forward_from(&self, input: Tensor<4>, producer: Option<&Quantizer>) -> Tensor<4> {
        let input = quantize_opt(&self.input_quant, input);
        let weight_quant = self.weight.reparameterization::<Quantizer>();
        if weight_quant.is_some() {
            crate::program::record_integer_input("QuantConv2d", &input);
        }
        let [_, _, h, w] = input.dims();
        let options = conv2d_options(
            &self.padding,
            [h, w],
            self.kernel_size,
            self.stride,
            self.dilation,
            self.groups,
        );
        let producer = self.input_quant.as_ref().or(producer);
        let (weight, bias) = weight_and_bias(&self.weight, self.bias.as_ref(), producer);
        let y = conv2d(input, weight, bias, options);
        if let Some(bias) = self.bias.as_ref().filter(|_| layer_outputs::capturing()) {
            layer_outputs::observe_output(bias.id, &y, 1);
        }
        finish_output(y, self.relu, &self.output_quant)
    }
}
