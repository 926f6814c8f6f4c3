//! [`BertEmbeddings`]: word + position + token-type embeddings, LayerNorm, and the quantizer of
//! the encoder's first input.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};
use quant::{
    LayerKind, QuantEmbedding, QuantEmbeddingConfig, QuantError, QuantMapping, QuantStub,
    QuantStubConfig,
};

use crate::kernels::{dropout, layer_norm};

use super::BertConfig;

/// The embedding block. Its three tables are quantized per row (a lookup copies rows, so the
/// looked-up vectors stay on their table's grid); their sum and LayerNorm are float; the result is
/// quantized once by `output_quant` for the first layer's Q, K and V projections, while the
/// residual path reads it in float.
///
/// Parameter paths: `word_embeddings.weight`, `position_embeddings.weight`,
/// `token_type_embeddings.weight`, `layer_norm.{gamma,beta}`, `output_quant.quant.*`.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `[vocab_size, hidden]`.
    pub word_embeddings: QuantEmbedding,
    /// `[max_position_embeddings, hidden]`.
    pub position_embeddings: QuantEmbedding,
    /// `[type_vocab_size, hidden]`.
    pub token_type_embeddings: QuantEmbedding,
    /// LayerNorm of the sum (float).
    pub layer_norm: LayerNorm,
    /// Quantizer of the normalised embeddings, read by the first layer's projections.
    pub output_quant: QuantStub,
    dropout: Dropout,
    /// `layer_norm`'s epsilon, for the fused kernel (Burn's `LayerNorm` keeps its own private).
    layer_norm_eps: f64,
}

impl BertEmbeddings {
    /// Builds the block of `config` (float: `config.mapping` is applied by [`Self::quantized`]).
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        let hidden = config.hidden_size;
        let table = |rows| QuantEmbeddingConfig::new(rows, hidden).init(device);
        BertEmbeddings {
            word_embeddings: table(config.vocab_size),
            position_embeddings: table(config.max_position_embeddings),
            token_type_embeddings: table(config.type_vocab_size),
            layer_norm: LayerNormConfig::new(hidden)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            output_quant: QuantStubConfig::new(hidden).init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            layer_norm_eps: config.layer_norm_eps,
        }
    }

    /// The block with `mapping`'s quantizers for paths under `path` (e.g. `embeddings`).
    pub fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let hidden = self.layer_norm.gamma.lazy_shape().dims::<1>()[0];
        let device = self.layer_norm.gamma.lazy_device();
        let table = |table: QuantEmbedding, name: &str| {
            let weight =
                mapping.weight_for(&format!("{path}.{name}.weight"), LayerKind::Embedding, 2);
            table
                .with_quantizer(&weight.cloned())
                .map_err(|e| e.within(&format!("{path}.{name}")))
        };
        Ok(BertEmbeddings {
            word_embeddings: table(self.word_embeddings, "word_embeddings")?,
            position_embeddings: table(self.position_embeddings, "position_embeddings")?,
            token_type_embeddings: table(self.token_type_embeddings, "token_type_embeddings")?,
            output_quant: stub(mapping, &format!("{path}.output_quant"), hidden, &device)?,
            ..self
        })
    }

    /// Hidden states `[batch, seq, hidden]` for `input_ids` `[batch, seq]` and optional
    /// `token_type_ids` (all segment 0 when absent), before and after `output_quant`: the float
    /// tensor feeds the residual path, the quantized one the projections.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> (Tensor<3>, Tensor<3>) {
        let device = input_ids.device();
        let [_, seq] = input_ids.dims();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq]);
        let types = token_type_ids.unwrap_or_else(|| Tensor::zeros([1, seq], &device));
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(types);
        let x = dropout(
            &self.dropout,
            layer_norm(&self.layer_norm, x, self.layer_norm_eps),
        );
        let q = self.output_quant.forward(x.clone());
        (x, q)
    }
}

/// The activation quantizer at `path` (a float tensor of width `channels` entering the integer
/// domain), as `mapping` has it; an error names the path.
pub(crate) fn stub(
    mapping: &QuantMapping,
    path: &str,
    channels: usize,
    device: &Device,
) -> Result<QuantStub, QuantError> {
    QuantStubConfig::new(channels)
        .with_quant(
            mapping
                .activation_for(path, LayerKind::Activation, 3)
                .cloned(),
        )
        .try_init(device)
        .map_err(|e| e.within(path))
}
