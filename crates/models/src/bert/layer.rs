//! [`BertLayer`]: one post-norm encoder layer (attention block, then feed-forward block).

use crate::kernels::{dropout, gelu, layer_norm};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};
use quant::{QuantError, QuantLinear, QuantMapping, QuantStub, Quantizer};

use super::attention::{linear, quantized_linear};
use super::{BertAttention, BertConfig, stub};

/// The feed-forward block's first projection and GELU (float); `output_quant` quantizes the GELU
/// output for the second projection.
///
/// Parameter paths: `dense`, `output_quant`.
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `hidden → intermediate` projection.
    pub dense: QuantLinear,
    /// Quantizer of the GELU output.
    pub output_quant: QuantStub,
}

/// A projection, dropout, residual add and LayerNorm (float), and the quantizer of the normalised
/// result for the projections that read it: the end of the attention block (Hugging Face's
/// `BertSelfOutput`) and of the feed-forward block (`BertOutput`), which have the same shape.
///
/// Parameter paths: `dense`, `layer_norm`, `output_quant`.
#[derive(Module, Debug)]
pub struct BertOutput {
    /// Projection to the hidden width (float output: it feeds the residual add).
    pub dense: QuantLinear,
    /// LayerNorm after the residual add.
    pub layer_norm: LayerNorm,
    /// Quantizer of the normalised output.
    pub output_quant: QuantStub,
    dropout: Dropout,
    /// `layer_norm`'s epsilon, for the fused kernel (Burn's `LayerNorm` keeps its own private).
    layer_norm_eps: f64,
}

/// One encoder layer. Parameter paths as Hugging Face's `BertLayer`, with `self_attention` for
/// `self` and `layer_norm` for `LayerNorm`.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention block.
    pub attention: BertAttention,
    /// First feed-forward projection and GELU.
    pub intermediate: BertIntermediate,
    /// Second feed-forward projection, residual add, LayerNorm.
    pub output: BertOutput,
}

impl BertLayer {
    /// Builds the float layer of `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let (hidden, inner) = (config.hidden_size, config.intermediate_size);
        BertLayer {
            attention: BertAttention::new(config, device),
            intermediate: BertIntermediate {
                dense: linear(hidden, inner, device),
                output_quant: quant::QuantStubConfig::new(inner).init(device),
            },
            output: BertOutput::new(inner, config, device),
        }
    }

    /// The layer with `mapping`'s quantizers for paths under `path` (e.g. `encoder.layer.0`).
    pub fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let device = self.output.layer_norm.gamma.lazy_device();
        let inner = self.output.dense.weight.lazy_shape().dims::<2>()[0];
        let p = |rest: &str| format!("{path}.{rest}");
        Ok(BertLayer {
            attention: self.attention.quantized(mapping, &p("attention"))?,
            intermediate: BertIntermediate {
                dense: quantized_linear(
                    self.intermediate.dense,
                    mapping,
                    &p("intermediate.dense"),
                    false,
                )?,
                output_quant: stub(mapping, &p("intermediate.output_quant"), inner, &device)?,
            },
            output: self.output.quantized(mapping, &p("output"))?,
        })
    }

    /// The layer on hidden states `x` (float) and `xq` (quantized); returns its output, float
    /// and quantized.
    /// `producer` quantized `xq` (the previous layer's output quantizer, or the embeddings').
    pub fn forward(
        &self,
        x: Tensor<3>,
        xq: Tensor<3>,
        mask: &Tensor<4>,
        producer: Option<&Quantizer>,
    ) -> (Tensor<3>, Tensor<3>) {
        let (h, hq) = self.attention.forward(x, xq, mask, producer);
        let hq_producer = self.attention.output.output_quant.quant.as_ref();
        let inner = gelu(self.intermediate.dense.forward_from(hq, hq_producer));
        let inner = self.intermediate.output_quant.forward(inner);
        let inner_producer = self.intermediate.output_quant.quant.as_ref();
        self.output.forward(inner, h, inner_producer)
    }
}

impl BertOutput {
    /// The float block projecting `d_input` features to `config.hidden_size`.
    pub fn new(d_input: usize, config: &BertConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        BertOutput {
            dense: linear(d_input, hidden, device),
            layer_norm: LayerNormConfig::new(hidden)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            output_quant: quant::QuantStubConfig::new(hidden).init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// The block with `mapping`'s quantizers for paths under `path`.
    pub fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let device = self.layer_norm.gamma.lazy_device();
        let hidden = self.layer_norm.gamma.lazy_shape().dims::<1>()[0];
        Ok(BertOutput {
            dense: quantized_linear(self.dense, mapping, &format!("{path}.dense"), false)?,
            output_quant: stub(mapping, &format!("{path}.output_quant"), hidden, &device)?,
            ..self
        })
    }

    /// `LayerNorm(dense(x) + residual)`, float and quantized.
    /// `producer` quantized `x`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        residual: Tensor<3>,
        producer: Option<&Quantizer>,
    ) -> (Tensor<3>, Tensor<3>) {
        let y = dropout(&self.dropout, self.dense.forward_from(x, producer));
        let y = layer_norm(&self.layer_norm, y + residual, self.layer_norm_eps);
        let q = self.output_quant.forward(y.clone());
        (y, q)
    }
}
