//! [`LayerQuant`]: the quantizers one layer gets, weight, input and output, as a mapping resolves
//! them for the layer's path.

use crate::QuantizerConfig;

/// The quantizer configs of one layer (each `None`: that tensor stays float).
///
/// Build it from a [`crate::QuantMapping`] with [`crate::QuantMapping::layer`], which looks up
/// `<path>.weight` and `<path>.output_quant`; a model then drops what its integer program does not
/// have (the logits of a classifier are read as dequantized accumulators, so the last layer has no
/// output quantizer) or adds an input quantizer where a layer reads a float tensor.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LayerQuant {
    /// Quantizer of the layer's weight.
    pub weight: Option<QuantizerConfig>,
    /// Quantizer of the layer's input, only where the input is float (after a float island).
    pub input: Option<QuantizerConfig>,
    /// Quantizer of the layer's output (after its fused ReLU, if any).
    pub output: Option<QuantizerConfig>,
}

impl LayerQuant {
    /// No quantizers: the float layer.
    pub fn float() -> Self {
        Self::default()
    }

    /// The same quantizers without the output quantizer.
    pub fn without_output(self) -> Self {
        LayerQuant {
            output: None,
            ..self
        }
    }

    /// The same quantizers with `input` as the input quantizer.
    pub fn with_input(self, input: Option<QuantizerConfig>) -> Self {
        LayerQuant { input, ..self }
    }
}
