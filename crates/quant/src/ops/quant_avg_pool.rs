//! [`QuantAvgPool2d`]: adaptive average pooling whose mean is requantized.

use burn::config::Config;
use burn::module::Module;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::tensor::{Device, Tensor};

use crate::layers::{activation_quantizer, quantize_opt};
use crate::{FakeQuant, LayerKind, QuantError, QuantizerConfig};

/// Configuration of a [`QuantAvgPool2d`].
#[derive(Config, Debug)]
pub struct QuantAvgPool2dConfig {
    /// Channels of the input, for per-channel specs.
    pub channels: usize,
    /// Output size `[h, w]` (`[1, 1]`: global average pooling).
    #[config(default = "[1, 1]")]
    pub output_size: [usize; 2],
    /// The quantizer of the pooled result; `None` leaves it float.
    pub output: Option<QuantizerConfig>,
}

/// Adaptive average pooling of an integer tensor, its mean requantized (an engine sums codes in
/// int32 and rounds the mean to the output grid).
///
/// # Shapes
/// - input `[batch, channels, h, w]`, output `[batch, channels, out_h, out_w]`.
#[derive(Module, Debug)]
pub struct QuantAvgPool2d {
    /// The pooling.
    pub pool: AdaptiveAvgPool2d,
    /// The quantizer of the result.
    pub output_quant: Option<FakeQuant>,
}

impl QuantAvgPool2dConfig {
    /// Builds the op, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantAvgPool2d, QuantError> {
        Ok(QuantAvgPool2d {
            pool: AdaptiveAvgPool2dConfig::new(self.output_size).init(),
            output_quant: activation_quantizer(
                &self.output,
                LayerKind::ActivationNchw,
                &[1, self.channels, 1, 1],
                device,
                "output",
            )?,
        })
    }

    /// Builds the op.
    ///
    /// # Panics
    /// If the quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantAvgPool2d {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantAvgPool2dConfig: {e}"))
    }
}

impl QuantAvgPool2d {
    /// The requantized pooled means.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.output_quant.is_some() {
            crate::program::record_integer_input("QuantAvgPool2d", &x);
        }
        quantize_opt(&self.output_quant, self.pool.forward(x))
    }
}
