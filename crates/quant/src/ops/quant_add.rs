//! [`QuantAdd`]: `Q(relu?(a + b))` for two integer tensors (PyTorch's `FloatFunctional.add` /
//! `add_relu`, TFLite's ADD).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::layers::{activation_quantizer, activation_shape, finish_output};
use crate::{FakeQuant, LayerKind, QuantError, QuantizerConfig};

/// Configuration of a [`QuantAdd`].
#[derive(Config, Debug)]
pub struct QuantAddConfig {
    /// Channels of the operands, for per-channel specs.
    pub channels: usize,
    /// Layout of the operands: `activation` (channels last) or `activation_nchw` (images).
    #[config(default = "LayerKind::Activation")]
    pub kind: LayerKind,
    /// Apply ReLU to the sum before requantizing (`add_relu`).
    #[config(default = false)]
    pub relu: bool,
    /// The quantizer of the sum; `None` leaves the sum float.
    pub output: Option<QuantizerConfig>,
}

/// A residual add whose result gets its own quantizer: an engine rescales both integer
/// operands to the output scale and adds (the sum of two grids is on neither).
///
/// Parameter paths: `output_quant.*`.
#[derive(Module, Debug)]
pub struct QuantAdd {
    /// The quantizer of the sum.
    pub output_quant: Option<FakeQuant>,
    /// ReLU fused before the quantizer.
    pub relu: bool,
}

impl QuantAddConfig {
    /// Builds the op, reporting an invalid quantizer config with its field path.
    pub fn try_init(&self, device: &Device) -> Result<QuantAdd, QuantError> {
        let shape = activation_shape(self.kind, self.channels);
        Ok(QuantAdd {
            output_quant: activation_quantizer(&self.output, self.kind, &shape, device, "output")?,
            relu: self.relu,
        })
    }

    /// Builds the op.
    ///
    /// # Panics
    /// If the quantizer config is invalid (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> QuantAdd {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("QuantAddConfig: {e}"))
    }
}

impl QuantAdd {
    /// `Q(relu?(a + b))`.
    ///
    /// # Panics
    /// If the shapes of `a` and `b` differ.
    pub fn forward<const D: usize>(&self, a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
        if self.output_quant.is_some() {
            crate::program::record_integer_input("QuantAdd (left operand)", &a);
            crate::program::record_integer_input("QuantAdd (right operand)", &b);
        }
        finish_output(a + b, self.relu, &self.output_quant)
    }
}
