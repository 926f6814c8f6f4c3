//! Pure fake-quantization math over `Tensor<D>`: every quantization parameter is an argument.
//!
//! These functions are the only place the quantize-dequantize formula and its straight-through
//! gradients are written. Quantizer modules compute parameters (observers, learned scales) and
//! call them. Each function names the PyTorch op it reproduces; golden values generated with those
//! ops live in `crates/quant/tests/golden/`.
mod fixed;
mod fused;
pub(crate) use fused::contiguous_flex;
pub use fused::fused_enabled;
pub(crate) use fused::{
    ObserveRule, fused_max_abs, fused_min_max, fused_observe, fused_observe_fake_quant,
    fused_observe_fake_quant_bias, round_to_step_product,
};
mod learnable;
mod pact;
mod qparams;
mod ste;
mod step_source;

pub(crate) use step_source::StepSource;

pub use fixed::{
    fake_quantize_per_channel_affine, fake_quantize_per_group_affine,
    fake_quantize_per_tensor_affine,
};
pub(crate) use learnable::{
    ZeroPoint, fake_quantize_learned_layout, fake_quantize_learned_layout_with_bias,
    fake_quantize_learned_rows,
};
pub use learnable::{fake_quantize_learnable, lsq_grad_factor};

/// The kernels behind the quantizers, on 4-D views (see [`crate::ParamLayout`]) with flat
/// parameters: for code that builds its own quantizers or tests the fused kernels against the
/// composite ops. Users call the per-granularity functions at the crate root.
pub mod kernels {
    pub use super::fixed::{fake_quantize_layout, fake_quantize_view, fake_quantize_view_with};
    pub use super::learnable::{fake_quantize_learnable_layout, fake_quantize_learnable_view};
}
pub use pact::*;
pub use qparams::*;
pub use ste::*;
