//! [`Bert`]: embeddings, a stack of encoder layers, and the optional pooler.

use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::{Bool, Device, Int, Tensor};
use quant::{QuantError, QuantLinear, QuantMapping, QuantStub, Quantizer};

use super::attention::{linear, quantized_linear};
use super::{BertConfig, BertEmbeddings, BertError, BertLayer, stub};

/// The encoder layers; parameter paths `layer.N.*` as Hugging Face's `BertEncoder`.
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// The layers, in order.
    pub layer: Vec<BertLayer>,
}

/// The pooler: `tanh(dense(h[CLS]))`, quantized by `output_quant` for a classifier.
///
/// Parameter paths: `dense`, `output_quant`.
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `hidden → hidden` projection of the first token.
    pub dense: QuantLinear,
    /// Quantizer of the pooled output.
    pub output_quant: QuantStub,
}

/// A BERT encoder (Hugging Face's `BertModel`), float or fake-quantized by its config's mapping.
///
/// Parameter paths are Hugging Face's with three renames (`encoder.layer.N.attention.self` →
/// `…attention.self_attention`, `LayerNorm` → `layer_norm` with `gamma`/`beta`) and quantizer
/// state beside them; the float and quantized models have the same paths, so a float checkpoint
/// loads into either. See `ARCHITECTURE.md` for the integer program and its quantization points.
#[derive(Module, Debug)]
pub struct Bert {
    /// Embedding block.
    pub embeddings: BertEmbeddings,
    /// Encoder layers.
    pub encoder: BertEncoder,
    /// Pooler (sentence-level heads read it; token-level models have none).
    pub pooler: Option<BertPooler>,
}

/// A batch of token ids as the encoder reads it.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`, `true` where a token is real and `false` on padding.
    pub attention_mask: Tensor<2, Bool>,
    /// `[batch, seq]` segment ids (`None`: all segment 0).
    pub token_type_ids: Option<Tensor<2, Int>>,
}

/// What the encoder returns.
#[derive(Debug, Clone)]
pub struct BertOutputs {
    /// Last hidden states `[batch, seq, hidden]` (float).
    pub hidden: Tensor<3>,
    /// The same, quantized by the last layer's `output_quant` (what a token-level head reads).
    pub hidden_quantized: Tensor<3>,
    /// Pooled `[batch, hidden]`, quantized by the pooler's `output_quant`, if there is a pooler.
    pub pooled: Option<Tensor<2>>,
}

/// Additive attention mask `[batch, 1, 1, seq]`: 0 on real tokens, -10000 on padding (the
/// original BERT's value: finite, so a fully masked row cannot make NaNs).
fn additive_mask(mask: Tensor<2, Bool>) -> Tensor<4> {
    let [batch, seq] = mask.dims();
    let padding = mask.bool_not().float();
    padding.mul_scalar(-10000.0).reshape([batch, 1, 1, seq])
}

impl BertConfig {
    /// Builds the encoder, with a pooler if `pooler`, and the mapping's quantizers; an invalid
    /// config or quantizer is an error naming the field or path.
    pub fn try_init(&self, pooler: bool, device: &Device) -> Result<Bert, BertError> {
        self.check()?;
        let float = Bert {
            embeddings: BertEmbeddings::new(self, device),
            encoder: BertEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|_| BertLayer::new(self, device))
                    .collect(),
            },
            pooler: pooler.then(|| BertPooler {
                dense: linear(self.hidden_size, self.hidden_size, device),
                output_quant: quant::QuantStubConfig::new(self.hidden_size).init(device),
            }),
        };
        Ok(float.quantized(&self.mapping, "")?)
    }
}

impl Bert {
    /// The quantizer of the encoder's last output (what the pooler and a token head read).
    pub fn last_quantizer(&self) -> Option<&Quantizer> {
        match self.encoder.layer.last() {
            Some(layer) => layer.output.output_quant.quant.as_ref(),
            None => self.embeddings.output_quant.quant.as_ref(),
        }
    }

    /// Gives the model `mapping`'s quantizers (replacing any it had), e.g. after loading float
    /// weights; `prefix` is the model's own path inside a head (`bert`), or empty.
    pub fn quantized(self, mapping: &QuantMapping, prefix: &str) -> Result<Self, QuantError> {
        mapping.validate()?;
        let p = |rest: &str| {
            if prefix.is_empty() {
                rest.to_string()
            } else {
                format!("{prefix}.{rest}")
            }
        };
        let device = self.embeddings.layer_norm.gamma.lazy_device();
        let layer = self
            .encoder
            .layer
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.quantized(mapping, &p(&format!("encoder.layer.{i}"))))
            .collect::<Result<_, _>>()?;
        let pooler = match self.pooler {
            None => None,
            Some(pooler) => {
                let hidden = pooler.dense.weight.lazy_shape().dims::<2>()[1];
                Some(BertPooler {
                    dense: quantized_linear(pooler.dense, mapping, &p("pooler.dense"), false)?,
                    output_quant: stub(mapping, &p("pooler.output_quant"), hidden, &device)?,
                })
            }
        };
        Ok(Bert {
            embeddings: self.embeddings.quantized(mapping, &p("embeddings"))?,
            encoder: BertEncoder { layer },
            pooler,
        })
    }

    /// Runs the encoder (and the pooler, if any).
    pub fn forward(&self, input: BertInput) -> BertOutputs {
        let mask = additive_mask(input.attention_mask);
        let (mut x, mut xq) = self
            .embeddings
            .forward(input.input_ids, input.token_type_ids);
        let mut producer = self.embeddings.output_quant.quant.as_ref();
        for layer in &self.encoder.layer {
            (x, xq) = layer.forward(x, xq, &mask, producer);
            producer = layer.output.output_quant.quant.as_ref();
        }
        let pooled = self.pooler.as_ref().map(|pooler| {
            let [batch, _, hidden] = xq.dims();
            let first = xq.clone().narrow(1, 0, 1).reshape([batch, hidden]);
            pooler
                .output_quant
                .forward(tanh(pooler.dense.forward_from(first, producer)))
        });
        BertOutputs {
            hidden: x,
            hidden_quantized: xq,
            pooled,
        }
    }
}
