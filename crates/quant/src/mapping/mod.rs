//! Whole-model quantization plans: which tensors get which [`crate::QuantizerConfig`], applied in one call.
mod mapping;
mod presets;
mod weight_quantizer;

pub use mapping::*;
pub use weight_quantizer::*;
