//! Quantization-aware training for Burn 0.22: fake quantization that trains on any Burn device.
//!
//! A float model becomes a QAT model in one of two ways:
//! - **built from this crate's layers and ops** ([`QuantLinear`], [`QuantConv2d`], [`ConvBn2d`],
//!   [`QuantEmbedding`], [`QuantStub`], [`QuantAdd`], [`QuantCat`], [`QuantAvgPool2d`]), whose
//!   configs take their quantizers from a [`QuantMapping`] by path: the model then simulates a
//!   whole integer program, weights and activations, and loads float checkpoints of the matching
//!   `burn::nn` layers unchanged;
//! - **without touching its code**: [`qat::prepare`] attaches a [`Quantizer`] to every
//!   Linear / Conv2d / Embedding weight through Burn's `Reparameterizer`, so stock `burn::nn`
//!   layers compute with fake-quantized weights (weight-only QAT: Burn has no forward hooks, so
//!   activations need quantizers placed in `forward`).
//!
//! **One quantizer per integer tensor, where it is produced.** Layers own the quantizer of their
//! output (after a fused ReLU); the model's input and the exits of float islands go through a
//! [`QuantStub`]; residual adds, concatenations and average pools requantize their result; ReLU,
//! max-pooling and reshapes keep the grid. Every consumer of a tensor therefore reads the same
//! integer codes, as an integer engine does; [`program::trace`] checks a model's forward pass for it.
//!
//! The pieces, from the bottom up:
//! - [`QuantSpec`] and [`Granularity`]: the integer grid (per-tensor, per-channel, per-group,
//!   dynamic per-token);
//! - the math ([`fake_quantize_per_tensor_affine`], [`fake_quantize_learnable`], [`pact`], …):
//!   quantize-dequantize with straight-through gradients, matching PyTorch's ops;
//! - [`Observer`]s: running range statistics (min-max, moving average, percentile, MSE search);
//! - [`Quantizer`] (alias [`FakeQuant`]): observer + learned parameters + switches + quant delay;
//! - [`control`]: whole-model switches; [`qat`]: the workflow (prepare, calibrate, schedule,
//!   quantizer parameter group, deployed size).
//!
//! Design decisions:
//! - Everything is non-generic over `Tensor<D>`: the same code runs on Flex, NdArray, wgpu,
//!   Vulkan, Metal and CUDA devices, and trains wherever `device.autodiff()` does.
//! - Fake quantization is composed from float ops with explicit straight-through estimators,
//!   because Burn's `round` has a zero gradient and its `quantize` detaches; on Flex fused kernels
//!   compute the same values and gradients in one pass each way.
//! - Fixed scales are computed from observer state cut from the graph (`no_grad`), so weights'
//!   scale computation never enters the backward pass.
#![deny(missing_docs)]

pub mod control;
mod error;
pub mod export;
pub mod launches;
mod layers;
mod mapping;
mod math;
mod observer;
mod ops;
pub mod program;
pub mod qat;
mod quantizer;
mod spec;
#[cfg(test)]
mod testing;

pub use error::*;
pub use layers::*;
pub use mapping::*;
pub use math::*;
pub use observer::*;
pub use ops::*;
pub use quantizer::*;
pub use spec::*;
