//! The CubeCL kernels behind [`super`]: the same arithmetic as the Flex kernels, one thread per
//! element (or per mask word), and per-parameter reductions as one cube per (parameter, chunk).
//!
//! Layouts (`mode`, a compile-time constant): 0 one parameter for the whole view; 1 one per
//! channel `gg` of the `[o, g, l, i]` view; 2 one per group `(o, g, i)` (groups run along `l`).
//! Reductions start from `±3.4028235e38` (the largest finite `f32`: WGSL has no infinity literal),
//! written as literals since a Rust constant would be a compile-time value in a `#[cube]` body.
//! Kept apart from the launch code: `#[cube]` expands to `cubecl::` paths, and burn's `Tensor`
//! must not be in scope here.
//!
//! Files: [`layout`] (an element's offset and parameter), [`grid`] (one element's quantization,
//! a parameter's grid), [`elementwise`] (fake quantization, clip masks, masked gradients),
//! [`reduction`] (cube-wide and per-(parameter, chunk) reductions), [`lsq`] (LSQ's backward),
//! [`observer`] (the observer update, one cube per parameter), [`range_keys`] (the observer
//! update over any size, in two launches), [`integer_bias`] (a bias rounded at `s_w · s_x`).

mod elementwise;
mod grid;
mod integer_bias;
mod layout;
mod lsq;
mod observer;
mod range_keys;
mod reduction;

pub use elementwise::{apply_mask, fake_quant, fake_quant_with_mask, masked_grad};
pub use integer_bias::{BiasStepsLaunch, round_to_step_product};
pub use lsq::{add_into_table_rows, lsq_backward};
pub use observer::observe;
pub use range_keys::{fold_and_fake_quant, reduce_to_range_keys};
pub use reduction::reduce;

/// The cube size of the reductions (a power of two; every runtime allows 256 units).
pub const REDUCE_UNITS: usize = 256;

/// Layout: one parameter for the whole view.
pub const PER_TENSOR: u32 = 0;
/// Layout: one parameter per channel `gg` of the view.
pub const PER_CHANNEL: u32 = 1;
/// Layout: one parameter per `(o, g, i)`; its elements run along `l`.
pub const PER_GROUP: u32 = 2;

/// Reduction: sum (the scale gradient).
pub const SUM: u32 = 0;
/// Reduction: largest magnitude (symmetric observers).
pub const MAX_ABS: u32 = 1;
/// Reduction: smallest and largest value (affine observers).
pub const MIN_MAX: u32 = 2;
/// Reduction: two sums at once (LSQ+'s scale and zero-point gradients).
pub const SUM_BOTH: u32 = 3;
