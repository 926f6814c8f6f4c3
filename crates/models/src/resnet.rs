//! [`ResNet`]: a ResNet-20-style residual network (He et al. 2016, §4.2: the CIFAR variant with
//! 6n + 2 layers) for 28×28 grayscale images.
//!
//! `conv 3×3 (16) → 3 stages × n basic blocks (16, 32, 64 channels; stages 2 and 3 halve the
//! resolution: 28 → 14 → 7) → global average pool → linear`. Every convolution is a
//! [`quant::ConvBn2d`]; a block whose shape changes uses a 1×1 conv + BN shortcut (option B).
//!
//! Integer program (quantizers from the config's mapping, by path): `input_quant` → `stem`
//! (fused ReLU, `stem.output_quant`) → blocks → `pool` (requantized mean) → `fc` (logits as
//! dequantized accumulators). In a block, the input `x` is the previous block's quantized output,
//! read as it is by `conv1` and by the shortcut (identity: those very codes; projection: a conv
//! whose output has its own quantizer); `conv2`'s output is quantized; `add` sums the two integer
//! tensors, applies the ReLU and requantizes (`blocks.N.add.output_quant`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Tensor};
use quant::{
    ConvBn2d, ConvBn2dConfig, LayerKind, QuantAdd, QuantAddConfig, QuantAvgPool2d,
    QuantAvgPool2dConfig, QuantConv2dConfig, QuantError, QuantLinear, QuantLinearConfig,
    QuantMapping, QuantStub, QuantStubConfig, Quantizer,
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
    /// The quantizers, by path (empty: the float model).
    #[config(default = "QuantMapping::new()")]
    pub mapping: QuantMapping,
}

/// A basic residual block: two 3×3 conv + BN, identity or 1×1 conv + BN shortcut, and the
/// requantizing add.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// First conv + BN + ReLU (carries the stride).
    pub conv1: ConvBn2d,
    /// Second conv + BN.
    pub conv2: ConvBn2d,
    /// Projection shortcut when the shape changes.
    pub shortcut: Option<ConvBn2d>,
    /// `relu(conv2 + shortcut)`, requantized.
    pub add: QuantAdd,
}

/// ResNet-20-style network; inputs `[batch, 1, 28, 28]`, outputs logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Quantizer of the input image.
    pub input_quant: QuantStub,
    /// Stem conv + BN + ReLU.
    pub stem: ConvBn2d,
    /// The residual blocks of all stages, in order.
    pub blocks: Vec<BasicBlock>,
    /// Global average pooling, requantized.
    pub pool: QuantAvgPool2d,
    /// Classifier.
    pub fc: QuantLinear,
}

fn conv_bn(
    [c_in, c_out]: [usize; 2],
    kernel: usize,
    stride: usize,
    relu: bool,
    device: &Device,
) -> ConvBn2d {
    let padding = if kernel == 1 {
        PaddingConfig2d::Valid
    } else {
        PaddingConfig2d::Explicit(1, 1, 1, 1)
    };
    let conv = QuantConv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(padding)
        .with_bias(false)
        .with_relu(relu);
    ConvBn2dConfig::new(conv).init(device)
}

fn add(channels: usize, device: &Device) -> QuantAdd {
    QuantAddConfig::new(channels)
        .with_kind(LayerKind::ActivationNchw)
        .with_relu(true)
        .init(device)
}

impl ResNetConfig {
    /// Builds the model with the quantizers of its mapping, naming an invalid one by path.
    pub fn try_init(&self, device: &Device) -> Result<ResNet, QuantError> {
        if self.blocks_per_stage == 0 {
            return Err(QuantError::field("blocks_per_stage", "must be at least 1"));
        }
        let stem = conv_bn([1, self.channels[0]], 3, 1, true, device);
        let mut blocks = Vec::new();
        let mut c_in = self.channels[0];
        for (stage, &c_out) in self.channels.iter().enumerate() {
            for i in 0..self.blocks_per_stage {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock {
                    conv1: conv_bn([c_in, c_out], 3, stride, true, device),
                    conv2: conv_bn([c_out, c_out], 3, 1, false, device),
                    shortcut: (stride != 1 || c_in != c_out)
                        .then(|| conv_bn([c_in, c_out], 1, stride, false, device)),
                    add: add(c_out, device),
                });
                c_in = c_out;
            }
        }
        let float = ResNet {
            input_quant: QuantStubConfig::new(1).init(device),
            stem,
            blocks,
            pool: QuantAvgPool2dConfig::new(c_in).init(device),
            fc: QuantLinearConfig::new(c_in, self.num_classes).init(device),
        };
        float.quantized(&self.mapping)
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the mapping is invalid for this model (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> ResNet {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("ResNetConfig: {e}"))
    }
}

/// Activation quantizer config of a functional op or stub at `path`.
fn activation(mapping: &QuantMapping, path: &str) -> Option<quant::QuantizerConfig> {
    mapping
        .activation_for(path, LayerKind::ActivationNchw, 4)
        .cloned()
}

impl BasicBlock {
    fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let conv = |name: &str| mapping.layer(&format!("{path}.{name}"), LayerKind::Conv2d, 4, 4);
        let channels = self.conv2.bn.gamma.lazy_shape().dims::<1>()[0];
        let device = self.conv2.conv.weight.lazy_device();
        Ok(BasicBlock {
            conv1: self
                .conv1
                .with_quantizers(&conv("conv1"))
                .map_err(|e| e.within("conv1"))?,
            conv2: self
                .conv2
                .with_quantizers(&conv("conv2"))
                .map_err(|e| e.within("conv2"))?,
            shortcut: self
                .shortcut
                .map(|s| {
                    s.with_quantizers(&conv("shortcut"))
                        .map_err(|e| e.within("shortcut"))
                })
                .transpose()?,
            add: QuantAddConfig::new(channels)
                .with_kind(LayerKind::ActivationNchw)
                .with_relu(true)
                .with_output(activation(mapping, &format!("{path}.add.output_quant")))
                .try_init(&device)
                .map_err(|e| e.within("add"))?,
        })
    }

    /// `x` was produced by `producer` (the previous block's add, or the stem).
    fn forward(&self, x: Tensor<4>, producer: Option<&Quantizer>) -> Tensor<4> {
        let y = self.conv1.forward_from(x.clone(), producer);
        let y = self.conv2.forward_from(y, self.conv1.output_quant.as_ref());
        let shortcut = match &self.shortcut {
            Some(conv) => conv.forward_from(x, producer),
            None => x,
        };
        self.add.forward(y, shortcut)
    }
}

impl ResNet {
    /// Gives the model `mapping`'s quantizers (replacing any it had), e.g. a float model just
    /// loaded from a float checkpoint; weight quantizers start from the current weights.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        mapping.validate()?;
        let device = self.fc.weight.lazy_device();
        let channels = self.fc.weight.lazy_shape().dims::<2>()[0];
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let path = format!("blocks.{i}");
                b.quantized(mapping, &path).map_err(|e| e.within(&path))
            })
            .collect::<Result<_, _>>()?;
        Ok(ResNet {
            input_quant: QuantStubConfig::new(1)
                .with_kind(LayerKind::ActivationNchw)
                .with_quant(activation(mapping, "input_quant.quant"))
                .try_init(&device)
                .map_err(|e| e.within("input_quant"))?,
            stem: self
                .stem
                .with_quantizers(&mapping.layer("stem", LayerKind::Conv2d, 4, 4))
                .map_err(|e| e.within("stem"))?,
            blocks,
            pool: QuantAvgPool2dConfig::new(channels)
                .with_output(activation(mapping, "pool.output_quant"))
                .try_init(&device)
                .map_err(|e| e.within("pool"))?,
            // The logits are read as dequantized accumulators: no output quantizer.
            fc: self
                .fc
                .with_quantizers(
                    &mapping
                        .layer("fc", LayerKind::Linear, 2, 2)
                        .without_output(),
                )
                .map_err(|e| e.within("fc"))?,
        })
    }

    /// The integer program of this model as an engine artifact carrying `meta`: input
    /// quantizer, stem, each block (`conv1` → `conv2`, the shortcut reading the block input's
    /// codes or its projection, the requantizing add with ReLU), the requantized global mean,
    /// and `fc`'s logits as dequantized accumulators. `image` is `[1, size, size]`.
    pub fn to_artifact(
        &self,
        size: usize,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError> {
        let mut b = engine::ProgramBuilder::new();
        let image = b.input("image", &[1, size, size]);
        let x = self.input_quant.export(&mut b, "input_quant", image)?;
        let mut x = self.stem.export(&mut b, "stem", x)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let path = format!("blocks.{i}");
            let y = block.conv1.export(&mut b, &format!("{path}.conv1"), x)?;
            let y = block.conv2.export(&mut b, &format!("{path}.conv2"), y)?;
            let shortcut = match &block.shortcut {
                Some(conv) => conv.export(&mut b, &format!("{path}.shortcut"), x)?,
                None => x,
            };
            x = block
                .add
                .export(&mut b, &format!("{path}.add"), y, shortcut)?;
        }
        let x = self.pool.export(&mut b, "pool", x)?;
        let x = b.flatten(x);
        let logits = self.fc.export(&mut b, "fc", x)?;
        b.output(logits);
        crate::export::finish(b, meta)
    }

    /// Logits for a batch of images `[batch, 1, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.input_quant.forward(images);
        let mut x = self.stem.forward_from(x, self.input_quant.quant.as_ref());
        let mut producer = self.stem.output_quant.as_ref();
        for block in &self.blocks {
            x = block.forward(x, producer);
            producer = block.add.output_quant.as_ref();
        }
        let [batch, channels, _, _] = x.dims();
        let x = self.pool.forward(x).reshape([batch, channels]);
        self.fc.forward_from(x, self.pool.output_quant.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{calibrated, calibrated_trace, mean_relative_gap};
    use burn::tensor::Distribution;
    use quant::qat::storage_bytes;

    fn small() -> ResNetConfig {
        ResNetConfig::new()
            .with_blocks_per_stage(1)
            .with_channels([4, 8, 8])
    }

    #[test]
    fn resnet20_has_twenty_weighted_layers_and_the_expected_size() {
        let device = Device::flex();
        let model = ResNetConfig::new().init(&device);
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
        let float = storage_bytes(&model);
        assert!((1_000_000..1_200_000).contains(&float), "{float}");
        let int8 = storage_bytes(&model.quantized(&QuantMapping::w8a8()).unwrap());
        assert!(float as f64 / int8 as f64 > 3.5, "{float} vs {int8}");
    }

    #[test]
    fn float_checkpoint_loads_into_the_qat_resnet() {
        let device = Device::flex();
        let float = small().init(&device);
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let expected = float.forward(images.clone());
        let qat = small().init(&device).load_record(float.into_record());
        let qat = qat.quantized(&QuantMapping::w8a8()).unwrap();
        let bypassed = quant::control::set_fake_quant(qat.clone(), false);
        let got = bypassed.forward(images.clone()).into_data();
        expected
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&got, burn::tensor::Tolerance::absolute(1e-4));
        let qat = calibrated(qat, &images, |m, x| {
            m.forward(x);
        });
        let gap = mean_relative_gap(expected, qat.forward(images));
        assert!(
            gap < 0.1,
            "8-bit logits differ from float by {gap:.3} of their magnitude"
        );
    }

    #[test]
    fn the_forward_pass_is_an_integer_program_with_requantized_residual_adds() {
        let device = Device::flex();
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        for mapping in [QuantMapping::w8a8(), QuantMapping::w4a4()] {
            let model = small().with_mapping(mapping).init(&device);
            let report = calibrated_trace(model, &images, |m, x| m.forward(x));
            assert!(report.is_integer_program(), "{:#?}", report.violations);
            // input, stem, per block conv1 + conv2 + add (+ shortcut in 2 of 3 blocks), pool.
            assert_eq!(report.quantizers, 1 + 1 + 3 * 3 + 2 + 1);
        }
    }

    #[test]
    fn a_float_residual_add_is_caught() {
        let device = Device::flex();
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let mut model = small().with_mapping(QuantMapping::w8a8()).init(&device);
        // The first block's sum left unquantized: the next block's convs read a float tensor.
        model.blocks[0].add.output_quant = None;
        let report = calibrated_trace(model, &images, |m, x| m.forward(x));
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("reads a float tensor")),
            "{:#?}",
            report.violations
        );
    }
}
