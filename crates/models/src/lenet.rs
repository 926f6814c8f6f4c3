//! [`LeNet`]: a LeNet-style CNN with batch norm for 28×28 grayscale images.
//!
//! `[conv 5×5 → BN → ReLU → max-pool 2] × 2 → linear → ReLU → linear`. Convolutions are
//! [`quant::ConvBn2d`] (BN folded into the quantized weight during QAT), linears [`quant::QuantLinear`].

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use quant::{
    ConvBn2d, ConvBn2dConfig, QuantConv2dConfig, QuantError, QuantLinear, QuantLinearConfig,
    QuantMapping, StorageSize,
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
}

/// LeNet with batch norm; inputs `[batch, 1, 28, 28]`, outputs logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct LeNet {
    /// First conv + BN.
    pub conv1: ConvBn2d,
    /// Second conv + BN.
    pub conv2: ConvBn2d,
    /// Hidden linear layer.
    pub fc1: QuantLinear,
    /// Classifier.
    pub fc2: QuantLinear,
    pool: MaxPool2d,
}

impl LeNetConfig {
    /// Builds the model with the quantizers of `mapping` (an empty mapping: float).
    pub fn init(&self, mapping: &QuantMapping, device: &Device) -> Result<LeNet, QuantError> {
        let [c1, c2] = self.channels;
        let conv = |c_in, c_out| {
            let conv = QuantConv2dConfig::new([c_in, c_out], [5, 5])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .with_weight(mapping.weight.clone())
                .with_input(mapping.activation.clone());
            ConvBn2dConfig::new(conv).try_init(device)
        };
        let linear = |d_in, d_out| {
            QuantLinearConfig::new(d_in, d_out)
                .with_weight(mapping.weight.clone())
                .with_input(mapping.activation.clone())
                .try_init(device)
        };
        Ok(LeNet {
            conv1: conv(1, c1).map_err(|e| e.within("conv1"))?,
            conv2: conv(c1, c2).map_err(|e| e.within("conv2"))?,
            fc1: linear(c2 * 7 * 7, self.hidden).map_err(|e| e.within("fc1"))?,
            fc2: linear(self.hidden, self.num_classes).map_err(|e| e.within("fc2"))?,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        })
    }
}

impl LeNet {
    /// Adds `mapping`'s quantizers to a float model (e.g. one just loaded from a float
    /// checkpoint), initialising weight quantizers from the trained weights.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        let (w, a) = (&mapping.weight, &mapping.activation);
        Ok(LeNet {
            conv1: self
                .conv1
                .with_quantizers(w, a)
                .map_err(|e| e.within("conv1"))?,
            conv2: self
                .conv2
                .with_quantizers(w, a)
                .map_err(|e| e.within("conv2"))?,
            fc1: self
                .fc1
                .with_quantizers(w, a)
                .map_err(|e| e.within("fc1"))?,
            fc2: self
                .fc2
                .with_quantizers(w, a)
                .map_err(|e| e.within("fc2"))?,
            pool: self.pool,
        })
    }

    /// Logits for a batch of images `[batch, 1, 28, 28]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(relu(self.conv1.forward(images)));
        let x = self.pool.forward(relu(self.conv2.forward(x)));
        let [batch, c, h, w] = x.dims();
        let x = relu(self.fc1.forward(x.reshape([batch, c * h * w])));
        self.fc2.forward(x)
    }
}

impl StorageSize for LeNet {
    fn storage_bytes(&self) -> usize {
        self.conv1.storage_bytes()
            + self.conv2.storage_bytes()
            + self.fc1.storage_bytes()
            + self.fc2.storage_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn float_checkpoint_loads_into_the_qat_model_and_keeps_its_outputs() {
        let device = Device::flex();
        let config = LeNetConfig::new().with_channels([4, 8]).with_hidden(16);
        let float = config.init(&QuantMapping::new(), &device).unwrap();
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let float_logits = float.forward(images.clone());
        assert_eq!(float_logits.dims(), [3, 10]);
        // Same parameter paths: the float record loads into a float-built model, then quantizers attach.
        let reloaded = config
            .init(&QuantMapping::new(), &device)
            .unwrap()
            .load_record(float.clone().into_record());
        let qat = reloaded.quantized(&QuantMapping::w8a8()).unwrap();
        let qat = quant::control::set_fake_quant(qat, false);
        let bypassed = qat.forward(images.clone());
        let (a, b) = (float_logits.into_data(), bypassed.into_data());
        a.assert_approx_eq::<f32>(&b, burn::tensor::Tolerance::absolute(1e-4));
        // With fake quantization on, the 8-bit model stays close to float.
        let quantized = quant::control::set_fake_quant(qat, true).forward(images);
        assert_eq!(quantized.dims(), [3, 10]);
    }

    #[test]
    fn invalid_mapping_names_the_layer() {
        let nine = quant::QuantizerConfig::new(quant::QuantSpec::new().with_bits(9));
        let err = LeNetConfig::new()
            .init(
                &QuantMapping::new().with_weight(Some(nine)),
                &Device::flex(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("conv1") && err.to_string().contains("bits"),
            "{err}"
        );
    }
}
