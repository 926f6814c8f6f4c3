//! What integer grid a tensor is quantized to: bit width, sign, symmetry and granularity.
mod granularity;
mod quant_spec;
mod view;

pub use granularity::*;
pub use quant_spec::*;
pub use view::*;
