//! [`QuantStub`]: quantizes a float tensor where the integer domain begins.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::layers::{activation_quantizer, activation_shape, quantize_opt};
use crate::{FakeQuant, LayerKind, QuantError, QuantizerConfig};

/// Configuration of a [`QuantStub`].
#[derive(Config, Debug)]
pub struct QuantStubConfig {
    /// Channels of the tensor (the size of its channel axis), for per-channel specs.
    pub channels: usize,
    /// Layout of the tensor: `activation` (channels last) or `activation_nchw` (images).
    #[config(default = "LayerKind::Activation")]
    pub kind: LayerKind,
    /// The quantizer; `None` leaves the tensor float.
    pub quant: Option<QuantizerConfig>,
}

/// The quantizer of a float tensor entering the integer domain: the model's input (PyTorch's
/// `QuantStub`), or the output of a float island. Every consumer reads its result.
///
/// Parameter paths: `quant.*`.
#[derive(Module, Debug)]
pub struct QuantStub {
    /// The quantizer.
    pub quant: Option<FakeQuant>,
}

impl QuantStubConfig {
    /// Builds the stub, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantStub, QuantError> {
        let shape = activation_shape(self.kind, self.channels);
        Ok(QuantStub {
            quant: activation_quantizer(&self.quant, self.kind, &shape, device, "quant")?,
        })
    }

    /// Builds the stub.
    ///
    /// # Panics
    /// If the quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantStub {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantStubConfig: {e}"))
    }
}

impl QuantStub {
    /// Quantizes `x` (or passes it through without a quantizer).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        quantize_opt(&self.quant, x)
    }
}
