//! [`QuantLinear`]: `y = Q_out(relu?(x · Q_w(W) + b))`, a drop-in for `burn::nn::Linear`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, module::linear};

use super::{
    LayerQuant, attach_weight_quantizer, finish_output, io_quantizers, quantize_opt,
    weight_and_bias, without_weight_quantizer,
};
use crate::{FakeQuant, LayerKind, QuantError, Quantizer, QuantizerConfig};

/// Configuration of a [`QuantLinear`]; with no quantizer configs it is a float layer.
#[derive(Config, Debug)]
pub struct QuantLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Apply ReLU before the output quantizer (a fused `LinearReLU`).
    #[config(default = false)]
    pub relu: bool,
    /// Weight quantizer (per-channel axis defaults to the output features).
    pub weight: Option<QuantizerConfig>,
    /// Input quantizer, for a layer whose input is float (the first layer after a float island).
    pub input: Option<QuantizerConfig>,
    /// Output quantizer (per-channel axis defaults to the output features).
    pub output: Option<QuantizerConfig>,
}

/// A Linear layer with fake-quantized weights and output (and, where its input is float, input).
///
/// Parameter paths are those of `burn::nn::Linear` (`weight` `[d_in, d_out]`, `bias`), plus
/// `weight.quant.*`, `input_quant.*` and `output_quant.*` for quantizer state.
///
/// # Shapes
/// - input `[..., d_input]`, output `[..., d_output]`.
#[derive(Module, Debug)]
pub struct QuantLinear {
    /// `[d_input, d_output]`, fake-quantized through its reparameterization.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Quantizer of a float input.
    pub input_quant: Option<FakeQuant>,
    /// Quantizer of the output.
    pub output_quant: Option<FakeQuant>,
    /// ReLU fused before the output quantizer.
    pub relu: bool,
}

impl QuantLinearConfig {
    /// Builds the layer, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantLinear, QuantError> {
        let float = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        let quant = LayerQuant {
            weight: self.weight.clone(),
            input: self.input.clone(),
            output: self.output.clone(),
        };
        QuantLinear::from_linear(float, &quant).map(|l| l.with_relu(self.relu))
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantLinear {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantLinearConfig: {e}"))
    }
}

impl QuantLinear {
    /// Quantizes an existing `burn::nn::Linear`, keeping its weights.
    pub fn from_linear(linear: Linear, quant: &LayerQuant) -> Result<Self, QuantError> {
        let layer = QuantLinear {
            weight: linear.weight,
            bias: linear.bias,
            input_quant: None,
            output_quant: None,
            relu: false,
        };
        layer.with_quantizers(quant)
    }

    /// The same layer with ReLU fused before its output quantizer (or not).
    pub fn with_relu(self, relu: bool) -> Self {
        QuantLinear { relu, ..self }
    }

    /// Replaces the quantizers of a layer (e.g. a float layer after loading float weights),
    /// initialising the weight quantizer from the current weights.
    pub fn with_quantizers(self, quant: &LayerQuant) -> Result<Self, QuantError> {
        let device = self.weight.lazy_device();
        let [d_input, d_output] = self.weight.lazy_shape().dims::<2>();
        let (input_quant, output_quant) =
            io_quantizers(quant, LayerKind::Activation, [d_input, d_output], &device)?;
        let layer = QuantLinear {
            input_quant,
            output_quant,
            ..self.dequantized()
        };
        attach_weight_quantizer(layer, &quant.weight)
    }

    /// The layer without any quantizer, weights as trained.
    pub fn dequantized(self) -> Self {
        QuantLinear {
            weight: without_weight_quantizer(self.weight),
            input_quant: None,
            output_quant: None,
            ..self
        }
    }

    /// Applies the layer to an input whose producer is unknown: the bias stays float (see
    /// [`Self::forward_from`]).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        self.forward_from(input, None)
    }

    /// Applies the layer to an input produced by the quantizer `producer` (or through this
    /// layer's own `input_quant`), adding the bias as the int32 an integer engine adds at
    /// `s_x · s_w` — so the model computes what its export will.
    pub fn forward_from<const D: usize>(
        &self,
        input: Tensor<D>,
        producer: Option<&Quantizer>,
    ) -> Tensor<D> {
        let input = quantize_opt(&self.input_quant, input);
        let weight_quant = self.weight.reparameterization::<Quantizer>();
        if weight_quant.is_some() {
            crate::program::record_integer_input("QuantLinear", &input);
        }
        let producer = self.input_quant.as_ref().or(producer);
        let bias = self.bias.as_ref().map(|b| b.val());
        let (weight, bias) = weight_and_bias(&self.weight, bias, producer);
        let y = linear(input, weight, bias);
        finish_output(y, self.relu, &self.output_quant)
    }
}
