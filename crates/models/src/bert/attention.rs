//! [`BertAttention`]: multi-head self-attention with integer matmuls, then the projection, the
//! residual add and LayerNorm.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};
use quant::{
    LayerKind, QuantError, QuantLinear, QuantLinearConfig, QuantMapping, QuantStub, Quantizer,
};

use crate::kernels::{dropout, masked_softmax};

use super::{BertConfig, BertOutput, stub};

/// Self-attention of one layer.
///
/// Integer program: Q, K and V are the outputs of their projections, each quantized by the
/// projection's `output_quant`; `QKᵀ` multiplies their codes (the `1/√d` scale and the padding
/// mask apply to the dequantized accumulators); softmax is float and its output is quantized by
/// `probs_quant`; `probs·V` multiplies codes again, and `context_quant` quantizes the result for
/// the output projection.
///
/// Parameter paths: `query`, `key`, `value` (each `weight`, `bias`, `output_quant`),
/// `probs_quant`, `context_quant`.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// Query projection.
    pub query: QuantLinear,
    /// Key projection.
    pub key: QuantLinear,
    /// Value projection.
    pub value: QuantLinear,
    /// Quantizer of the attention probabilities (the left input of `probs·V`).
    pub probs_quant: QuantStub,
    /// Quantizer of the attention context (the input of the output projection).
    pub context_quant: QuantStub,
    dropout: Dropout,
    heads: usize,
}

/// Self-attention and its output block (Hugging Face's `BertAttention`).
///
/// Parameter paths: `self_attention.*` (Hugging Face's `attention.self.*`), `output.*`.
#[derive(Module, Debug)]
pub struct BertAttention {
    /// Self-attention.
    pub self_attention: BertSelfAttention,
    /// Projection, residual add, LayerNorm.
    pub output: BertOutput,
}

pub(crate) fn linear(d_in: usize, d_out: usize, device: &Device) -> QuantLinear {
    QuantLinearConfig::new(d_in, d_out).init(device)
}

/// `layer` with the mapping's quantizers for `path`, with or without its output quantizer.
pub(crate) fn quantized_linear(
    layer: QuantLinear,
    mapping: &QuantMapping,
    path: &str,
    output: bool,
) -> Result<QuantLinear, QuantError> {
    let quant = mapping.layer(path, LayerKind::Linear, 2, 3);
    let quant = if output {
        quant
    } else {
        quant.without_output()
    };
    layer.with_quantizers(&quant).map_err(|e| e.within(path))
}

impl BertAttention {
    /// Builds the float block of `config`.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        BertAttention {
            self_attention: BertSelfAttention {
                query: linear(hidden, hidden, device),
                key: linear(hidden, hidden, device),
                value: linear(hidden, hidden, device),
                probs_quant: quant::QuantStubConfig::new(1).init(device),
                context_quant: quant::QuantStubConfig::new(hidden).init(device),
                dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                heads: config.num_attention_heads,
            },
            output: BertOutput::new(hidden, config, device),
        }
    }

    /// The block with `mapping`'s quantizers for paths under `path`.
    pub fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let device = self.output.layer_norm.gamma.lazy_device();
        let hidden = self.output.layer_norm.gamma.lazy_shape().dims::<1>()[0];
        let sa = format!("{path}.self_attention");
        let s = self.self_attention;
        let self_attention = BertSelfAttention {
            query: quantized_linear(s.query, mapping, &format!("{sa}.query"), true)?,
            key: quantized_linear(s.key, mapping, &format!("{sa}.key"), true)?,
            value: quantized_linear(s.value, mapping, &format!("{sa}.value"), true)?,
            probs_quant: stub(mapping, &format!("{sa}.probs_quant"), 1, &device)?,
            context_quant: stub(mapping, &format!("{sa}.context_quant"), hidden, &device)?,
            ..s
        };
        Ok(BertAttention {
            self_attention,
            output: self.output.quantized(mapping, &format!("{path}.output"))?,
        })
    }

    /// The block on hidden states `x` (float, for the residual) and `xq` (their quantized
    /// codes, for the projections), with the additive padding mask `[batch, 1, 1, seq]`.
    /// Returns the normalised output, float and quantized.
    /// `producer` quantized `xq` (so the projections add their biases as the engine's int32).
    pub fn forward(
        &self,
        x: Tensor<3>,
        xq: Tensor<3>,
        mask: &Tensor<4>,
        producer: Option<&Quantizer>,
    ) -> (Tensor<3>, Tensor<3>) {
        let context = self.self_attention.forward(xq, mask, producer);
        let context_quant = self.self_attention.context_quant.quant.as_ref();
        self.output.forward(context, x, context_quant)
    }
}

impl BertSelfAttention {
    /// Number of attention heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// `[batch, seq, hidden]` → `[batch, heads, seq, head_dim]`.
    fn split_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [batch, seq, hidden] = x.dims();
        x.reshape([batch, seq, self.heads, hidden / self.heads])
            .swap_dims(1, 2)
    }

    /// The quantized attention context `[batch, seq, hidden]` of quantized hidden states `xq`.
    pub fn forward(
        &self,
        xq: Tensor<3>,
        mask: &Tensor<4>,
        producer: Option<&Quantizer>,
    ) -> Tensor<3> {
        let [batch, seq, hidden] = xq.dims();
        let q = self.split_heads(self.query.forward_from(xq.clone(), producer));
        let k = self.split_heads(self.key.forward_from(xq.clone(), producer));
        let v = self.split_heads(self.value.forward_from(xq, producer));
        quant::program::record_integer_input("attention QKᵀ (query)", &q);
        quant::program::record_integer_input("attention QKᵀ (key)", &k);
        let scale = 1.0 / ((hidden / self.heads) as f64).sqrt();
        let scores = q.matmul(k.swap_dims(2, 3));
        let probs = dropout(&self.dropout, masked_softmax(scores, scale, mask));
        let probs = self.probs_quant.forward(probs);
        quant::program::record_integer_input("attention probs·V (probs)", &probs);
        quant::program::record_integer_input("attention probs·V (value)", &v);
        let context = probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        self.context_quant.forward(context)
    }
}
