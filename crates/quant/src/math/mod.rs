//! Pure fake-quantization math over `Tensor<D>`: every quantization parameter is an argument.
//!
//! These functions are the only place the quantize-dequantize formula and its straight-through
//! gradients are written. Quantizer modules compute parameters (observers, learned scales) and
//! call them. Each function names the PyTorch op it reproduces; golden values generated with those
//! ops live in `crates/quant/tests/golden/`.
mod fixed;
mod fused;
pub(crate) use fused::{fused_max_abs, fused_min_max};
mod learnable;
mod pact;
mod qparams;
mod ste;

pub use fixed::*;
pub use learnable::*;
pub use pact::*;
pub use qparams::*;
pub use ste::*;
