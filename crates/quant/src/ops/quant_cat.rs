//! [`QuantCat`]: concatenation requantized to one grid (PyTorch's `FloatFunctional.cat`).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::layers::{activation_quantizer, activation_shape, quantize_opt};
use crate::{FakeQuant, LayerKind, QuantError, QuantizerConfig};

/// Configuration of a [`QuantCat`].
#[derive(Config, Debug)]
pub struct QuantCatConfig {
    /// Channels of the result, for per-channel specs.
    pub channels: usize,
    /// Layout of the operands: `activation` (channels last) or `activation_nchw` (images).
    #[config(default = "LayerKind::Activation")]
    pub kind: LayerKind,
    /// The quantizer of the result; `None` leaves it float.
    pub output: Option<QuantizerConfig>,
}

/// Concatenation of integer tensors whose result gets one quantizer, so its consumers read one
/// grid (the operands may come from quantizers with different scales).
///
/// Parameter paths: `output_quant.*`.
#[derive(Module, Debug)]
pub struct QuantCat {
    /// The quantizer of the result.
    pub output_quant: Option<FakeQuant>,
}

impl QuantCatConfig {
    /// Builds the op, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantCat, QuantError> {
        let shape = activation_shape(self.kind, self.channels);
        Ok(QuantCat {
            output_quant: activation_quantizer(&self.output, self.kind, &shape, device, "output")?,
        })
    }

    /// Builds the op.
    ///
    /// # Panics
    /// If the quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantCat {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantCatConfig: {e}"))
    }
}

impl QuantCat {
    /// `Q(cat(tensors, dim))`.
    ///
    /// # Panics
    /// If `tensors` is empty or their shapes differ off `dim`.
    pub fn forward<const D: usize>(&self, tensors: Vec<Tensor<D>>, dim: usize) -> Tensor<D> {
        if self.output_quant.is_some() {
            for t in &tensors {
                crate::program::record_integer_input("QuantCat", t);
            }
        }
        quantize_opt(&self.output_quant, Tensor::cat(tensors, dim))
    }
}
