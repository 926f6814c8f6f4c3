//! [`QuantLinear`]: `y = Q_a(x) · Q_w(W) + b`, a drop-in for `burn::nn::Linear`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, module::linear};

use super::{attach_weight_quantizer, input_quantizer};
use crate::{FakeQuant, QuantError, QuantizerConfig};

/// Configuration of a [`QuantLinear`]; `weight: None` and `input: None` give a float layer.
#[derive(Config, Debug)]
pub struct QuantLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias.
    #[config(default = true)]
    pub bias: bool,
    /// Weight quantizer (per-channel axis defaults to the output features).
    pub weight: Option<QuantizerConfig>,
    /// Input-activation quantizer.
    pub input: Option<QuantizerConfig>,
}

/// A Linear layer with fake-quantized weights and inputs.
///
/// Parameter paths are those of `burn::nn::Linear` (`weight` `[d_in, d_out]`, `bias`), plus
/// `weight.quant.*` and `input_quant.*` for quantizer state.
///
/// # Shapes
/// - input `[..., d_input]`, output `[..., d_output]`.
#[derive(Module, Debug)]
pub struct QuantLinear {
    /// `[d_input, d_output]`, fake-quantized through its reparameterization.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// Quantizer of the layer's input.
    pub input_quant: Option<FakeQuant>,
}

impl QuantLinearConfig {
    /// Builds the layer, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantLinear, QuantError> {
        let float = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        QuantLinear::from_linear(float, &self.weight, &self.input)
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
    pub fn from_linear(
        linear: Linear,
        weight: &Option<QuantizerConfig>,
        input: &Option<QuantizerConfig>,
    ) -> Result<Self, QuantError> {
        let layer = QuantLinear {
            weight: linear.weight,
            bias: linear.bias,
            input_quant: None,
        };
        layer.with_quantizers(weight, input)
    }

    /// Adds quantizers to a float layer (one built without them, e.g. after loading float weights),
    /// initialising the weight quantizer from the current weights.
    pub fn with_quantizers(
        self,
        weight: &Option<QuantizerConfig>,
        input: &Option<QuantizerConfig>,
    ) -> Result<Self, QuantError> {
        let device = self.weight.lazy_device();
        let [d_input, _] = self.weight.lazy_shape().dims::<2>();
        let layer = QuantLinear {
            input_quant: input_quantizer(input, &[1, d_input], &device)?,
            ..self
        };
        attach_weight_quantizer(layer, weight)
    }

    /// Applies the layer.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let input = match &self.input_quant {
            Some(quant) => quant.forward(input),
            None => input,
        };
        linear(
            input,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        )
    }
}
