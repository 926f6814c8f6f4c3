//! Quantization-aware training for Burn 0.22: fake quantization that trains on any Burn device.
//!
//! A float model becomes a QAT model in one of two ways:
//! - **without touching its code**: [`QuantMapping::quantize_weights`] attaches a [`Quantizer`]
//!   to every Linear / Conv2d / Embedding weight through Burn's `Reparameterizer`, so stock
//!   `burn::nn` layers compute with fake-quantized weights;
//! - **with drop-in layers**: [`QuantLinear`], [`QuantConv2d`], [`QuantEmbedding`] and
//!   [`ConvBn2d`] also quantize their inputs, and load float checkpoints of the matching
//!   `burn::nn` layers unchanged.
//!
//! The pieces, from the bottom up:
//! - [`QuantSpec`] and [`Granularity`]: the integer grid;
//! - the math ([`fake_quantize_per_tensor_affine`], [`fake_quantize_learnable`], [`pact`], …):
//!   quantize-dequantize with straight-through gradients, matching PyTorch's ops;
//! - [`Observer`]s: running range statistics (min-max, moving average, percentile, MSE search);
//! - [`Quantizer`] (alias [`FakeQuant`]): observer + learned parameters + switches + quant delay;
//! - [`control`]: whole-model switches for QAT schedules.
//!
//! Design decisions:
//! - Everything is non-generic over `Tensor<D>`: the same code runs on Flex, NdArray, wgpu,
//!   Vulkan, Metal and CUDA devices, and trains wherever `device.autodiff()` does.
//! - Fake quantization is composed from float ops with explicit straight-through estimators,
//!   because Burn's `round` has a zero gradient and its `quantize` detaches.
//! - Fixed scales are computed from observer state cut from the graph (`no_grad`), so weights'
//!   scale computation never enters the backward pass.
#![deny(missing_docs)]

pub mod control;
mod deploy;
mod error;
mod layers;
mod mapping;
mod math;
mod observer;
mod quantizer;
mod spec;

pub use deploy::*;
pub use error::*;
pub use layers::*;
pub use mapping::*;
pub use math::*;
pub use observer::*;
pub use quantizer::*;
pub use spec::*;
