//! [`LeNet`]: a LeNet-style CNN with batch norm for 28×28 grayscale images.
//!
//! `[conv 5×5 → BN → ReLU → max-pool 2] × 2 → linear → ReLU → linear`. Convolutions are
//! [`quant::ConvBn2d`] (BN folded into the quantized weight during QAT), linears [`quant::QuantLinear`].
//!
//! Integer program (every quantizer from the config's mapping, by path):
//! `input_quant` (the image) → `conv1` (fused ReLU, `conv1.output_quant`) → max-pool →
//! `conv2` (fused ReLU, `conv2.output_quant`) → max-pool → flatten → `fc1` (fused ReLU,
//! `fc1.output_quant`) → `fc2`, whose logits are the dequantized int32 accumulators.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};
use quant::{
    ConvBn2d, ConvBn2dConfig, LayerKind, QuantConv2dConfig, QuantError, QuantLinear,
    QuantLinearConfig, QuantMapping, QuantStub, QuantStubConfig,
};

/// Configuration of a [`LeNet`].
#[derive(Config, Debug)]
pub struct LeNetConfig {
    /// Output channels of the two convolutions.
    #[config(default = "[16, 32]")]
    pub channels: [usize; 2],
    /// Width of the hidden linear layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// The quantizers, by path (empty: the float model).
    #[config(default = "QuantMapping::new()")]
    pub mapping: QuantMapping,
}

/// LeNet with batch norm; inputs `[batch, 1, 28, 28]`, outputs logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct LeNet {
    /// Quantizer of the input image.
    pub input_quant: QuantStub,
    /// First conv + BN + ReLU.
    pub conv1: ConvBn2d,
    /// Second conv + BN + ReLU.
    pub conv2: ConvBn2d,
    /// Hidden linear layer + ReLU.
    pub fc1: QuantLinear,
    /// Classifier.
    pub fc2: QuantLinear,
    pool: MaxPool2d,
}

impl LeNetConfig {
    /// Builds the model with the quantizers of its mapping, naming an invalid one by path.
    pub fn try_init(&self, device: &Device) -> Result<LeNet, QuantError> {
        let [c1, c2] = self.channels;
        let conv = |c_in, c_out| {
            let conv = QuantConv2dConfig::new([c_in, c_out], [5, 5])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .with_relu(true);
            ConvBn2dConfig::new(conv).init(device)
        };
        let linear = |d_in, d_out, relu| {
            QuantLinearConfig::new(d_in, d_out)
                .with_relu(relu)
                .init(device)
        };
        let float = LeNet {
            input_quant: QuantStubConfig::new(1).init(device),
            conv1: conv(1, c1),
            conv2: conv(c1, c2),
            fc1: linear(c2 * 7 * 7, self.hidden, true),
            fc2: linear(self.hidden, self.num_classes, false),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        };
        float.quantized(&self.mapping)
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the mapping is invalid for this model (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> LeNet {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("LeNetConfig: {e}"))
    }
}

impl LeNet {
    /// Gives the model `mapping`'s quantizers (replacing any it had), e.g. a float model just
    /// loaded from a float checkpoint; weight quantizers start from the current weights.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        mapping.validate()?;
        let conv = |path: &str| mapping.layer(path, LayerKind::Conv2d, 4, 4);
        let linear = |path: &str| mapping.layer(path, LayerKind::Linear, 2, 2);
        let input = mapping
            .activation_for("input_quant.quant", LayerKind::ActivationNchw, 4)
            .cloned();
        Ok(LeNet {
            input_quant: QuantStubConfig::new(1)
                .with_kind(LayerKind::ActivationNchw)
                .with_quant(input)
                .try_init(&self.fc1.weight.lazy_device())
                .map_err(|e| e.within("input_quant"))?,
            conv1: self
                .conv1
                .with_quantizers(&conv("conv1"))
                .map_err(|e| e.within("conv1"))?,
            conv2: self
                .conv2
                .with_quantizers(&conv("conv2"))
                .map_err(|e| e.within("conv2"))?,
            fc1: self
                .fc1
                .with_quantizers(&linear("fc1"))
                .map_err(|e| e.within("fc1"))?,
            // The logits are read as dequantized accumulators: no output quantizer.
            fc2: self
                .fc2
                .with_quantizers(&linear("fc2").without_output())
                .map_err(|e| e.within("fc2"))?,
            pool: self.pool,
        })
    }

    /// The integer program of this model (calibrated or QAT-trained, quantizers in eval mode)
    /// as an engine artifact carrying `meta`: the input quantizer, the two convolutions with BN
    /// folded and their fused ReLUs, max-pools on codes, flatten, `fc1`, and `fc2`'s logits as
    /// dequantized accumulators — the ops of [`Self::forward`], one for one.
    pub fn to_artifact(&self, meta: serde_json::Value) -> Result<engine::Artifact, QuantError> {
        let mut b = engine::ProgramBuilder::new();
        let image = b.input("image", &[1, 28, 28]);
        let x = self.input_quant.export(&mut b, "input_quant", image)?;
        let x = self.conv1.export(&mut b, "conv1", x)?;
        let x = crate::export::max_pool(&mut b, &self.pool, x, "pool")?;
        let x = self.conv2.export(&mut b, "conv2", x)?;
        let x = crate::export::max_pool(&mut b, &self.pool, x, "pool")?;
        let x = b.flatten(x);
        let x = self.fc1.export(&mut b, "fc1", x)?;
        let logits = self.fc2.export(&mut b, "fc2", x)?;
        b.output(logits);
        crate::export::finish(b, meta)
    }

    /// Logits for a batch of images `[batch, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        // Each layer is told which quantizer produced its input (max-pool and reshape keep the
        // grid), so it adds its bias as the engine's int32.
        let x = self.input_quant.forward(images);
        let x = self.conv1.forward_from(x, self.input_quant.quant.as_ref());
        let x = self.pool.forward(x);
        let x = self.conv2.forward_from(x, self.conv1.output_quant.as_ref());
        let x = self.pool.forward(x);
        let [batch, c, h, w] = x.dims();
        let x = self.fc1.forward_from(
            x.reshape([batch, c * h * w]),
            self.conv2.output_quant.as_ref(),
        );
        self.fc2.forward_from(x, self.fc1.output_quant.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{calibrated, calibrated_trace, mean_relative_gap};
    use burn::tensor::Distribution;

    fn small() -> LeNetConfig {
        LeNetConfig::new().with_channels([4, 8]).with_hidden(16)
    }

    #[test]
    fn float_checkpoint_loads_into_the_qat_model_and_keeps_its_outputs() {
        let device = Device::flex();
        let float = small().init(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let float_logits = float.forward(images.clone());
        assert_eq!(float_logits.dims(), [3, 10]);
        // Same parameter paths: the float record loads into a float-built model, then quantizers attach.
        let reloaded = small()
            .init(&device)
            .load_record(float.clone().into_record());
        let qat = reloaded.quantized(&QuantMapping::w8a8()).unwrap();
        let qat = quant::control::set_fake_quant(qat, false);
        let bypassed = qat.forward(images.clone());
        float_logits.clone().into_data().assert_approx_eq::<f32>(
            &bypassed.into_data(),
            burn::tensor::Tolerance::absolute(1e-4),
        );
        // Calibrated at 8 bits, the model computes nearly what the float model computes.
        let qat = calibrated(qat, &images, |m, x| {
            m.forward(x);
        });
        let gap = mean_relative_gap(float_logits, qat.forward(images));
        assert!(
            gap < 0.05,
            "8-bit logits differ from float by {gap:.3} of their magnitude"
        );
    }

    #[test]
    fn the_forward_pass_is_an_integer_program() {
        let device = Device::flex();
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Default, &device);
        for mapping in [QuantMapping::w8a8(), QuantMapping::w4a4()] {
            let model = small().with_mapping(mapping).init(&device);
            let report = calibrated_trace(model, &images, |m, x| m.forward(x));
            assert!(report.is_integer_program(), "{:#?}", report.violations);
            // input, conv1, conv2, fc1: one quantizer per integer tensor.
            assert_eq!(report.quantizers, 4);
            assert_eq!(report.integer_ops, 4);
        }
    }

    #[test]
    fn a_consumer_that_quantizes_its_producers_output_again_is_caught() {
        let device = Device::flex();
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Default, &device);
        let mapping = QuantMapping::w8a8();
        let mut model = small().with_mapping(mapping.clone()).init(&device);
        // conv2 quantizing its (already quantized) input: the layout this crate used to have.
        let layer = mapping
            .layer("conv2", LayerKind::Conv2d, 4, 4)
            .with_input(mapping.activation.clone());
        model.conv2 = model.conv2.with_quantizers(&layer).unwrap();
        let report = calibrated_trace(model, &images, |m, x| m.forward(x));
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.contains("already on the grid")),
            "{:#?}",
            report.violations
        );
    }

    #[test]
    fn invalid_mapping_names_the_layer() {
        let nine = quant::QuantizerConfig::new(quant::QuantSpec::new().with_bits(9));
        let err = LeNetConfig::new()
            .with_mapping(QuantMapping::new().with_weight(Some(nine)))
            .try_init(&Device::flex())
            .unwrap_err();
        assert!(err.to_string().contains("bits"), "{err}");
        let per_group = quant::QuantizerConfig::new(quant::QuantSpec::new().with_granularity(
            quant::Granularity::PerGroup {
                axis: None,
                group_size: 7,
            },
        ));
        let err = small()
            .with_mapping(QuantMapping::new().with_weight(Some(per_group)))
            .try_init(&Device::flex())
            .unwrap_err();
        assert!(
            err.to_string().contains("conv1") && err.to_string().contains("group_size"),
            "{err}"
        );
    }
}
