//! [`ResNet`]: a ResNet-20-style residual network (He et al. 2016, §4.2: the CIFAR variant with
//! 6n + 2 layers) for 28×28 grayscale images.
//!
//! `conv 3×3 (16) → 3 stages × n basic blocks (16, 32, 64 channels; stages 2 and 3 halve the
//! resolution: 28 → 14 → 7) → global average pool → linear`. Every convolution is a
//! [`quant::ConvBn2d`]; a block whose shape changes uses a 1×1 conv + BN shortcut (option B).

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use quant::{
    ConvBn2d, ConvBn2dConfig, QuantConv2dConfig, QuantError, QuantLinear, QuantLinearConfig,
    QuantMapping, StorageSize,
};

/// Configuration of a [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Basic blocks per stage (`n`; 3 gives ResNet-20, 5 ResNet-32).
    #[config(default = 3)]
    pub blocks_per_stage: usize,
    /// Channels of the three stages.
    #[config(default = "[16, 32, 64]")]
    pub channels: [usize; 3],
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
}

/// A basic residual block: two 3×3 conv + BN, identity or 1×1 conv + BN shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First conv + BN (carries the stride).
    pub conv1: ConvBn2d,
    /// Second conv + BN.
    pub conv2: ConvBn2d,
    /// Projection shortcut when the shape changes.
    pub shortcut: Option<ConvBn2d>,
}

/// ResNet-20-style network; inputs `[batch, 1, 28, 28]`, outputs logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem conv + BN.
    pub stem: ConvBn2d,
    /// The residual blocks of all stages, in order.
    pub blocks: Vec<BasicBlock>,
    /// Classifier.
    pub fc: QuantLinear,
    pool: AdaptiveAvgPool2d,
}

fn conv_bn(
    mapping: &QuantMapping,
    [c_in, c_out]: [usize; 2],
    kernel: usize,
    stride: usize,
    device: &Device,
) -> Result<ConvBn2d, QuantError> {
    let padding = if kernel == 1 {
        PaddingConfig2d::Valid
    } else {
        PaddingConfig2d::Explicit(1, 1, 1, 1)
    };
    let conv = QuantConv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_bias(false)
        .with_weight(mapping.weight.clone())
        .with_input(mapping.activation.clone());
    ConvBn2dConfig::new(conv).try_init(device)
}

impl ResNetConfig {
    /// Builds the model with the quantizers of `mapping` (an empty mapping: float).
    pub fn init(&self, mapping: &QuantMapping, device: &Device) -> Result<ResNet, QuantError> {
        if self.blocks_per_stage == 0 {
            return Err(QuantError::field("blocks_per_stage", "must be at least 1"));
        }
        let stem =
            conv_bn(mapping, [1, self.channels[0]], 3, 1, device).map_err(|e| e.within("stem"))?;
        let mut blocks = Vec::new();
        let mut c_in = self.channels[0];
        for (stage, &c_out) in self.channels.iter().enumerate() {
            for i in 0..self.blocks_per_stage {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let index = blocks.len();
                let block = || -> Result<BasicBlock, QuantError> {
                    Ok(BasicBlock {
                        conv1: conv_bn(mapping, [c_in, c_out], 3, stride, device)
                            .map_err(|e| e.within("conv1"))?,
                        conv2: conv_bn(mapping, [c_out, c_out], 3, 1, device)
                            .map_err(|e| e.within("conv2"))?,
                        shortcut: (stride != 1 || c_in != c_out)
                            .then(|| {
                                conv_bn(mapping, [c_in, c_out], 1, stride, device)
                                    .map_err(|e| e.within("shortcut"))
                            })
                            .transpose()?,
                    })
                };
                blocks.push(block().map_err(|e| e.within(&format!("blocks.{index}")))?);
                c_in = c_out;
            }
        }
        let fc = QuantLinearConfig::new(c_in, self.num_classes)
            .with_weight(mapping.weight.clone())
            .with_input(mapping.activation.clone())
            .try_init(device)
            .map_err(|e| e.within("fc"))?;
        Ok(ResNet {
            stem,
            blocks,
            fc,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        })
    }
}

impl BasicBlock {
    fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        let (w, a) = (&mapping.weight, &mapping.activation);
        Ok(BasicBlock {
            conv1: self
                .conv1
                .with_quantizers(w, a)
                .map_err(|e| e.within("conv1"))?,
            conv2: self
                .conv2
                .with_quantizers(w, a)
                .map_err(|e| e.within("conv2"))?,
            shortcut: self
                .shortcut
                .map(|s| s.with_quantizers(w, a).map_err(|e| e.within("shortcut")))
                .transpose()?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = relu(self.conv1.forward(x.clone()));
        let y = self.conv2.forward(y);
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        relu(y + shortcut)
    }
}

impl ResNet {
    /// Adds `mapping`'s quantizers to a float model (e.g. one just loaded from a float checkpoint).
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        let (w, a) = (&mapping.weight, &mapping.activation);
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                b.quantized(mapping)
                    .map_err(|e| e.within(&format!("blocks.{i}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ResNet {
            stem: self
                .stem
                .with_quantizers(w, a)
                .map_err(|e| e.within("stem"))?,
            blocks,
            fc: self.fc.with_quantizers(w, a).map_err(|e| e.within("fc"))?,
            pool: self.pool,
        })
    }

    /// Logits for a batch of images `[batch, 1, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.stem.forward(images));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let [batch, channels, _, _] = x.dims();
        let x = self.pool.forward(x).reshape([batch, channels]);
        self.fc.forward(x)
    }
}

impl StorageSize for ResNet {
    fn storage_bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                b.conv1.storage_bytes()
                    + b.conv2.storage_bytes()
                    + b.shortcut.as_ref().map_or(0, |s| s.storage_bytes())
            })
            .sum();
        self.stem.storage_bytes() + blocks + self.fc.storage_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn resnet20_has_twenty_weighted_layers_and_the_expected_size() {
        let device = Device::flex();
        let model = ResNetConfig::new()
            .init(&QuantMapping::new(), &device)
            .unwrap();
        // 1 stem + 3 stages × 3 blocks × 2 convs + 1 fc = 20 (shortcuts are projections, not counted).
        assert_eq!(1 + model.blocks.len() * 2 + 1, 20);
        assert_eq!(
            model.blocks.iter().filter(|b| b.shortcut.is_some()).count(),
            2
        );
        let logits = model.forward(Tensor::random(
            [2, 1, 28, 28],
            Distribution::Default,
            &device,
        ));
        assert_eq!(logits.dims(), [2, 10]);
        // About 0.27 M parameters, as in He et al. (Table 6: 0.27 M for ResNet-20).
        let float = model.storage_bytes();
        assert!((1_000_000..1_200_000).contains(&float), "{float}");
        let int8 = model
            .quantized(&QuantMapping::w8a8())
            .unwrap()
            .storage_bytes();
        assert!(float as f64 / int8 as f64 > 3.5, "{float} vs {int8}");
    }

    #[test]
    fn float_checkpoint_loads_into_the_qat_resnet() {
        let device = Device::flex();
        let config = ResNetConfig::new()
            .with_blocks_per_stage(1)
            .with_channels([4, 8, 8]);
        let float = config.init(&QuantMapping::new(), &device).unwrap();
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let expected = float.forward(images.clone()).into_data();
        let qat = config
            .init(&QuantMapping::new(), &device)
            .unwrap()
            .load_record(float.into_record());
        let qat =
            quant::control::set_fake_quant(qat.quantized(&QuantMapping::w4a8()).unwrap(), false);
        let got = qat.forward(images).into_data();
        expected.assert_approx_eq::<f32>(&got, burn::tensor::Tolerance::absolute(1e-4));
    }
}
