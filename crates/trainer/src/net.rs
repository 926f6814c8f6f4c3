//! [`Net`]: the networks the trainer builds from a [`ModelConfig`].

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use models::{LeNet, LeNetConfig, ResNet, ResNetConfig};
use quant::{QuantError, QuantMapping};

use crate::TrainerError;

use crate::ModelConfig;

/// One of the CNNs of the `models` crate.
#[derive(Module, Debug)]
pub enum Net {
    /// LeNet with batch norm.
    LeNet(LeNet),
    /// ResNet-20 style.
    ResNet(ResNet),
}

impl Net {
    /// Builds the network of `config` with `mapping`'s quantizers (empty mapping: float).
    pub fn init(
        config: &ModelConfig,
        num_classes: usize,
        mapping: &QuantMapping,
        device: &Device,
    ) -> Result<Net, TrainerError> {
        Ok(match config {
            ModelConfig::LenetBn { channels, hidden } => Net::LeNet(
                LeNetConfig::new()
                    .with_channels(*channels)
                    .with_hidden(*hidden)
                    .with_num_classes(num_classes)
                    .with_mapping(mapping.clone())
                    .try_init(device)?,
            ),
            ModelConfig::Resnet {
                blocks_per_stage,
                channels,
            } => Net::ResNet(
                ResNetConfig::new()
                    .with_blocks_per_stage(*blocks_per_stage)
                    .with_channels(*channels)
                    .with_num_classes(num_classes)
                    .with_mapping(mapping.clone())
                    .try_init(device)?,
            ),
            ModelConfig::Bert { .. } | ModelConfig::Lstm { .. } => {
                return Err(TrainerError::Config {
                    origin: "config".into(),
                    message: "`model.kind`: only `lenet-bn` and `resnet` are image models".into(),
                });
            }
        })
    }

    /// Adds `mapping`'s quantizers (weight quantizers initialised from the current weights).
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Net, QuantError> {
        Ok(match self {
            Net::LeNet(net) => Net::LeNet(net.quantized(mapping)?),
            Net::ResNet(net) => Net::ResNet(net.quantized(mapping)?),
        })
    }

    /// The integer artifact of this (calibrated or QAT-trained) network for `size × size`
    /// images, carrying `meta`.
    pub fn to_artifact(
        &self,
        size: usize,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError> {
        match self {
            Net::LeNet(net) if size == 28 => net.to_artifact(meta),
            Net::LeNet(_) => Err(QuantError::field(
                "image size",
                format!("LeNet-BN takes 28×28 images, not {size}×{size}"),
            )),
            Net::ResNet(net) => net.to_artifact(size, meta),
        }
    }

    /// Logits `[batch, classes]` for images `[batch, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Net::LeNet(net) => net.forward(images),
            Net::ResNet(net) => net.forward(images),
        }
    }
}
