//! [`QuantLinear`]: `y = Q_out(relu?(x · Q_w(W) + b))`, a drop-in for `burn::nn::Linear`.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::linear_product::linear_any_rank;
use super::{
    LayerQuant, attach_weight_quantizer, finish_output, io_quantizers, quantize_opt,
    weight_and_bias, without_weight_quantizer,
};
use crate::qat::layer_outputs;
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
        let (weight, bias) = weight_and_bias(&self.weight, self.bias.as_ref(), producer);
        let y = linear_any_rank(input, weight, bias);
        if let Some(bias) = self.bias.as_ref().filter(|_| layer_outputs::capturing()) {
            layer_outputs::observe_output(bias.id, &y, D - 1);
        }
        finish_output(y, self.relu, &self.output_quant)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor, module::linear};

    use crate::QuantLinearConfig;
    use crate::testing::{assert_close, kernel_devices, values};

    /// On Flex the layer folds a sequence batch into the rows of one product (elsewhere it is
    /// Burn's `linear`); its output and its input, weight and bias gradients are those of Burn's
    /// batched `linear` (which keeps the batches apart at 32 rows a batch, the shape this pins).
    #[test]
    fn sequence_batch_folded_into_rows_equals_the_batched_linear() {
        for device in kernel_devices() {
            let device = device.autodiff();
            let layer = QuantLinearConfig::new(8, 6).init(&device);
            let x = Tensor::<3>::random([3, 32, 8], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let dy = Tensor::<3>::random([3, 32, 6], Distribution::Normal(0.0, 1.0), &device);
            let weight = layer.weight.val();
            let bias = layer.bias.as_ref().map(|b| b.val());
            let grads_of = |y: Tensor<3>| {
                let grads = (y * dy.clone()).sum().backward();
                let dx = x.grad(&grads).expect("input gradient");
                let dw = layer.weight.val().grad(&grads).expect("weight gradient");
                let db = bias
                    .as_ref()
                    .and_then(|b| b.grad(&grads))
                    .expect("bias gradient");
                (values(dx), values(dw), values(db))
            };
            let folded = layer.forward(x.clone());
            let batched = linear(x.clone(), weight, bias.clone());
            let name = format!("{device:?}");
            assert_eq!(folded.dims(), [3, 32, 6], "{name}: output shape");
            assert_close(&name, &values(folded.clone()), &values(batched.clone()));
            let (dx, dw, db) = grads_of(folded);
            let (dx_ref, dw_ref, db_ref) = grads_of(batched);
            assert_close(&format!("{name} dx"), &dx, &dx_ref);
            assert_close(&format!("{name} dw"), &dw, &dw_ref);
            assert_close(&format!("{name} db"), &db, &db_ref);
        }
    }
}
