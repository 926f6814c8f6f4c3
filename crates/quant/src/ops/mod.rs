//! Quantized functional ops and stubs: where a model's integer program creates integer tensors
//! that are not a layer's output (PyTorch's `QuantStub` and `FloatFunctional`).
//!
//! - [`QuantStub`]: the network input, and the re-entry after a float island (LayerNorm,
//!   softmax, GELU), quantized once;
//! - [`QuantAdd`]: a residual add of two integer tensors, its result requantized (optionally
//!   after a fused ReLU);
//! - [`QuantCat`]: concatenation, requantized to one grid;
//! - [`QuantAvgPool2d`]: adaptive average pooling, requantized (an engine rounds the mean).
//!
//! ReLU, max-pooling, reshape and flatten need no op: they keep the input's grid.
mod quant_add;
mod quant_avg_pool;
mod quant_cat;
mod quant_stub;

pub use quant_add::*;
pub use quant_avg_pool::*;
pub use quant_cat::*;
pub use quant_stub::*;
