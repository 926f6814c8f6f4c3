//! [`QuantEmbedding`]: an embedding table whose rows are fake-quantized, a drop-in for `burn::nn::Embedding`.
//!
//! A lookup copies rows, so the looked-up vectors are on the table's grid (per row): the layer's
//! output needs no quantizer of its own.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor, module::embedding};

use super::{attach_weight_quantizer, without_weight_quantizer};
use crate::{QuantError, QuantizerConfig};

/// Configuration of a [`QuantEmbedding`].
#[derive(Config, Debug)]
pub struct QuantEmbeddingConfig {
    /// Number of embeddings (vocabulary size).
    pub n_embedding: usize,
    /// Size of each embedding.
    pub d_model: usize,
    /// Weight quantizer (per-channel defaults to one scale per embedding row).
    pub weight: Option<QuantizerConfig>,
}

/// An embedding table with fake-quantized weights; parameter path `weight` `[n_embedding, d_model]`
/// as in `burn::nn::Embedding`.
///
/// # Shapes
/// - input `[batch, seq]` (indices), output `[batch, seq, d_model]`.
#[derive(Module, Debug)]
pub struct QuantEmbedding {
    /// `[n_embedding, d_model]`.
    pub weight: Param<Tensor<2>>,
}

impl QuantEmbeddingConfig {
    /// Builds the layer, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantEmbedding, QuantError> {
        let float = EmbeddingConfig::new(self.n_embedding, self.d_model).init(device);
        QuantEmbedding::from_embedding(float, &self.weight)
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If the quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantEmbedding {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantEmbeddingConfig: {e}"))
    }
}

impl QuantEmbedding {
    /// Quantizes an existing `burn::nn::Embedding` (e.g. a pretrained table), keeping its rows.
    pub fn from_embedding(
        embedding: Embedding,
        weight: &Option<QuantizerConfig>,
    ) -> Result<Self, QuantError> {
        QuantEmbedding {
            weight: embedding.weight,
        }
        .with_quantizer(weight)
    }

    /// Replaces the table's quantizer, initialising it from the current rows.
    pub fn with_quantizer(self, weight: &Option<QuantizerConfig>) -> Result<Self, QuantError> {
        let layer = QuantEmbedding {
            weight: without_weight_quantizer(self.weight),
        };
        attach_weight_quantizer(layer, weight)
    }

    /// Looks up the (fake-quantized) rows for `indices`.
    pub fn forward(&self, indices: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.val(), indices)
    }
}
