//! [`QuantEmbedding`]: an embedding table whose rows are fake-quantized, a drop-in for `burn::nn::Embedding`.
//!
//! A lookup copies rows, so the looked-up vectors are on the table's grid (per row): the layer's
//! output needs no quantizer of its own.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor, module::embedding};

use super::{attach_weight_quantizer, without_weight_quantizer};
use crate::{QuantError, Quantizer, QuantizerConfig};

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

    /// Looks up the (fake-quantized) rows for `indices`: only the looked-up rows are
    /// fake-quantized ([`Quantizer::forward_rows`]), with the values and gradients of quantizing
    /// the whole table first.
    pub fn forward(&self, indices: Tensor<2, Int>) -> Tensor<3> {
        match self.weight.reparameterization::<Quantizer>() {
            Some(quantizer) => {
                let [batch, seq] = indices.dims();
                let rows =
                    quantizer.forward_rows(self.weight.base(), indices.reshape([batch * seq]));
                let d_model = rows.dims()[1];
                rows.reshape([batch, seq, d_model])
            }
            None => embedding(self.weight.val(), indices),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::{Granularity, QuantMapping};

    /// Looking up fake-quantized rows ([`Quantizer::forward_rows`]) equals fake-quantizing the
    /// whole table and then looking up, in values, in the table's gradient (repeated ids
    /// included) and in a learned scale's: W8 (fixed scale, current observer, per row), W4 (LSQ
    /// per row, on its symmetric grid and on an affine one whose zero point the kernels compute
    /// from the frozen range), and a per-tensor W8; on Flex and on wgpu; on large tables with
    /// more rows than the lookup (the looked-up rows alone are quantized, the kernels reading
    /// each row's parameters in the table and adding its scale gradient back into the table's),
    /// one of them with rows longer than a GPU reduction cube takes (partial sums per row); on a
    /// small table and on one with fewer rows than the lookup (the whole table is quantized).
    #[test]
    fn row_lookup_equals_quantizing_the_whole_table() {
        for device in crate::testing::kernel_devices() {
            // Above WHOLE_TABLE_ELEMENTS the row path; below it by size, and by rows.
            for (n_embedding, d_model) in [(300, 900), (70, 4100), (50, 12), (6, 12)] {
                let large = n_embedding * d_model > crate::WHOLE_TABLE_ELEMENTS;
                assert_eq!(large, n_embedding > 6 && d_model > 12, "the cases' sizes");
                lookup_equals_quantizing_the_whole_table(&device, n_embedding, d_model);
            }
        }
    }

    fn lookup_equals_quantizing_the_whole_table(
        device: &Device,
        n_embedding: usize,
        d_model: usize,
    ) {
        let mut per_tensor = QuantMapping::w8().weight.unwrap();
        per_tensor.spec.granularity = Granularity::PerTensor;
        let mut affine = QuantMapping::w4().weight.unwrap();
        affine.spec.symmetric = false;
        let configs = [
            ("w8", QuantMapping::w8().weight),
            ("w4 lsq", QuantMapping::w4().weight),
            ("w4 lsq affine", Some(affine)),
            ("w8 per tensor", Some(per_tensor)),
        ];
        for (name, weight) in configs {
            let name = format!("{device:?}, {name}, {n_embedding} × {d_model}");
            device.seed(5);
            let layer = QuantEmbeddingConfig::new(n_embedding, d_model)
                .with_weight(weight)
                .init(device);
            let last = n_embedding as i64 - 1;
            let ids = Tensor::<2, Int>::from_ints([[3, 4, 3, last], [0, 4, 1, 3]], device);
            // A first lookup initialises a learned scale from the observer, so the one checked
            // trains it.
            let _ = layer.forward(ids.clone());
            let dy = Tensor::<3>::random([2, 4, d_model], Distribution::Default, device);
            let ours = layer.forward(ids.clone());
            let reference = embedding(layer.weight.val(), ids);
            ours.to_data()
                .assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-6));
            let grad_ours = (ours * dy.clone()).sum().backward();
            let grad_reference = (reference * dy).sum().backward();
            let table = layer.weight.base();
            let [ours, reference] = [&grad_ours, &grad_reference].map(|g| table.grad(g).unwrap());
            assert!(
                ours.clone().abs().sum().into_scalar::<f32>() > 0.0,
                "{name}: no gradient"
            );
            ours.to_data()
                .assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-6));
            let quantizer = layer.weight.reparameterization::<Quantizer>().unwrap();
            if let Some(learned) = &quantizer.learned_scale {
                let delta = learned.delta.val();
                let [ours, reference] =
                    [&grad_ours, &grad_reference].map(|g| delta.grad(g).unwrap());
                assert!(
                    ours.clone().abs().sum().into_scalar::<f32>() > 0.0,
                    "{name}: no scale gradient"
                );
                ours.to_data()
                    .assert_approx_eq::<f32>(&reference.to_data(), Tolerance::absolute(1e-5));
            }
        }
    }
}
