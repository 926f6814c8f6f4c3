//! [`ConvBn2d`]: convolution + batch norm with simulated BN folding during QAT
//! (Krishnamoorthi 2018, §3.2.2; PyTorch's `torch.ao.nn.intrinsic.qat.ConvBn2d`).
//!
//! Deployment folds BN into the conv: `W_f = W · γ/σ`, `b_f = β + (b - μ) · γ/σ`, `σ = sqrt(var + ε)`,
//! and quantizes `W_f`. Training therefore fake-quantizes the *folded* weight:
//! - BN live (training, not frozen): `y = BN_batch(conv(x, Q(W · γ/σ_run)) · σ_run/γ + b)`; the
//!   batch statistics normalise while the weight scale uses running statistics (PyTorch's
//!   "approximate" forward), and BN's running statistics keep updating;
//! - BN frozen (after the freeze epoch) or inference: `y = conv(x, Q(W_f)) + b_f`, exactly the
//!   deployed integer computation.
//!
//! Then the optional fused ReLU and the output quantizer (PyTorch's `ConvBnReLU2d`).

use burn::config::Config;
use burn::module::{Flag, Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor, module::conv2d};

use super::conv_options::conv2d_options;
use super::quant_conv2d::QuantConv2dConfig;
use super::{LayerQuant, finish_output, io_quantizers, quantize_opt, quantized_weight_and_bias};
use crate::qat::adaround_site::Site;
use crate::qat::layer_outputs;
use crate::{FakeQuant, LayerKind, QuantError, Quantizer};

/// Configuration of a [`ConvBn2d`]: the convolution (its `weight` quantizer applies to the folded
/// weight; `input`, `output` and `relu` as in [`crate::QuantConv2d`]) and the batch norm.
#[derive(Config, Debug)]
pub struct ConvBn2dConfig {
    /// Convolution and quantizers.
    pub conv: QuantConv2dConfig,
    /// Batch-norm momentum.
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Batch-norm epsilon.
    #[config(default = 1e-5)]
    pub bn_epsilon: f64,
}

/// Conv + BN with the BN folded into the fake-quantized weight.
///
/// Parameter paths are those of a float `{ conv: Conv2d, bn: BatchNorm }` pair, plus
/// `weight_quant.*`, `input_quant.*` and `output_quant.*`, so a float conv+BN checkpoint loads
/// unchanged.
#[derive(Module, Debug)]
pub struct ConvBn2d {
    /// The float convolution (unfolded weights, as trained).
    pub conv: Conv2d,
    /// The batch norm whose statistics are folded.
    pub bn: BatchNorm,
    /// Quantizer of the folded weight.
    pub weight_quant: Option<Quantizer>,
    /// Quantizer of a float input.
    pub input_quant: Option<FakeQuant>,
    /// Quantizer of the output (after the fused ReLU).
    pub output_quant: Option<FakeQuant>,
    /// ReLU fused before the output quantizer.
    pub relu: bool,
    /// Use running statistics in training too (BN-statistics freeze).
    pub bn_frozen: Param<Flag>,
}

impl ConvBn2dConfig {
    /// Builds the layer, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<ConvBn2d, QuantError> {
        let conv = self.conv.conv_config().init(device);
        let bn = BatchNormConfig::new(self.conv.channels[1])
            .with_momentum(self.bn_momentum)
            .with_epsilon(self.bn_epsilon)
            .init(device);
        let layer = ConvBn2d {
            conv,
            bn,
            weight_quant: None,
            input_quant: None,
            output_quant: None,
            relu: self.conv.relu,
            bn_frozen: Param::from_bool(false),
        };
        layer
            .with_quantizers(&self.conv.layer_quant())
            .map_err(|e| e.within("conv"))
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If a quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> ConvBn2d {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("ConvBn2dConfig: {e}"))
    }
}

impl ConvBn2d {
    /// Replaces the quantizers (e.g. of a float conv + BN after loading float weights and
    /// statistics), initialising the weight quantizer from the current folded weight.
    pub fn with_quantizers(self, quant: &LayerQuant) -> Result<Self, QuantError> {
        let device = self.conv.weight.lazy_device();
        let weight_shape = self.conv.weight.lazy_shape().dims::<4>();
        let c_in = weight_shape[1] * self.conv.groups;
        let c_out = weight_shape[0];
        let weight_quant = quant
            .weight
            .as_ref()
            .map(|c| {
                c.init(LayerKind::Conv2d, &weight_shape, &device)
                    .map_err(|e| e.within("weight"))
            })
            .transpose()?;
        let (input_quant, output_quant) =
            io_quantizers(quant, LayerKind::ActivationNchw, [c_in, c_out], &device)?;
        let layer = ConvBn2d {
            weight_quant,
            input_quant,
            output_quant,
            ..self
        };
        if let Some(quant) = &layer.weight_quant {
            quant.observe(layer.folded_weight());
        }
        Ok(layer)
    }

    /// The same layer with ReLU fused before its output quantizer (or not).
    pub fn with_relu(self, relu: bool) -> Self {
        ConvBn2d { relu, ..self }
    }

    /// `γ / sqrt(running_var + ε)`, `[channels_out]`.
    fn bn_scale(&self) -> Tensor<1> {
        let std = self
            .bn
            .running_var
            .value_sync()
            .add_scalar(self.bn.epsilon)
            .sqrt();
        self.bn.gamma.val() / std
    }

    /// The BN-folded float weight `W · γ/σ`.
    pub fn folded_weight(&self) -> Tensor<4> {
        let [c_out, ..] = self.conv.weight.lazy_shape().dims::<4>();
        self.conv.weight.val() * self.bn_scale().reshape([c_out, 1, 1, 1])
    }

    /// The BN-folded bias `β + (b - μ) · γ/σ`.
    pub fn folded_bias(&self) -> Tensor<1> {
        let mean = self.bn.running_mean.value_sync();
        let bias = match &self.conv.bias {
            Some(b) => b.val() - mean,
            None => mean.neg(),
        };
        self.bn.beta.val() + bias * self.bn_scale()
    }

    /// The weight as deployed: folded, then fake-quantized.
    pub fn quantized_folded_weight(&self) -> Tensor<4> {
        let folded = self.folded_weight();
        match &self.weight_quant {
            Some(quant) => quant.forward_weight(folded),
            None => folded,
        }
    }

    /// Applies the layer (see the module docs for the two regimes).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_from(input, None)
    }

    /// Applies the layer to an input produced by the quantizer `producer` (or through this
    /// layer's own `input_quant`): once BN is folded (frozen, or evaluating), the folded bias is
    /// added as the int32 an integer engine adds at `s_x · s_w` (see `QuantLinear::forward_from`).
    pub fn forward_from(&self, input: Tensor<4>, producer: Option<&Quantizer>) -> Tensor<4> {
        let input = quantize_opt(&self.input_quant, input);
        if self.weight_quant.is_some() {
            crate::program::record_integer_input("ConvBn2d", &input);
        }
        let [_, _, h, w] = input.dims();
        let conv = &self.conv;
        let options = conv2d_options(
            &conv.padding,
            [h, w],
            conv.kernel_size,
            conv.stride,
            conv.dilation,
            conv.groups,
        );
        let bn_live = input.device().is_autodiff()
            && self.bn.training.is_enabled()
            && !self.bn_frozen.is_enabled();
        if !bn_live {
            let producer = self.input_quant.as_ref().or(producer);
            let (weight, bias) = match &self.weight_quant {
                Some(quant) => {
                    let site = crate::qat::adaround_site::active().then(|| Site {
                        layer: self.bn.beta.id,
                        weight: self.conv.weight.id,
                        fold: Some(self.bn_scale()),
                    });
                    quantized_weight_and_bias(
                        quant,
                        self.folded_weight(),
                        self.folded_bias(),
                        producer,
                        site,
                    )
                }
                None => (self.folded_weight(), self.folded_bias()),
            };
            let y = conv2d(input, weight, Some(bias), options);
            if layer_outputs::capturing() {
                layer_outputs::observe_output(self.bn.beta.id, &y, 1);
            }
            return finish_output(y, self.relu, &self.output_quant);
        }
        let c_out = self.bn.gamma.lazy_shape().dims::<1>()[0];
        let scale = self.bn_scale();
        let y = conv2d(input, self.quantized_folded_weight(), None, options)
            / scale.reshape([1, c_out, 1, 1]);
        let y = match &conv.bias {
            Some(b) => y + b.val().reshape([1, c_out, 1, 1]),
            None => y,
        };
        finish_output(self.bn.forward(y), self.relu, &self.output_quant)
    }
}
