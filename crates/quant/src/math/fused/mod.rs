//! Fused fake-quantization kernels as a Burn backend extension: Flex (CPU) and CubeCL (GPU).
//!
//! Composite ops cost one memory pass each (about 15 for a clipped fake-quant); a fused kernel
//! makes one. Fixed-scale and LSQ fake quantization are one tracked op ([`autodiff`]) with one
//! forward and one backward kernel. LSQ+ (learned zero point) computes the dequantized values and
//! the gradient coefficients as *constants* and keeps the gradient with autodiff through
//! exact-zero tracked terms: `x̂ = dq + (x - x_c) · mask + (s - s_c) · A + (zp - zp_c) · B`,
//! where `_c` are the same values cut from the graph, so the forward value is exactly `dq` and the
//! gradients are `∂x̂/∂x = mask`, `∂x̂/∂s = A`, `∂x̂/∂zp = B` (see [`crate::fake_quantize_learnable`]).
//! Observers' per-parameter ranges are fused reductions too.
//! On CubeCL devices (wgpu / Vulkan / Metal, CUDA; feature `cube`) the same trait is implemented
//! by CubeCL kernels ([`cube`]), wrapped by burn-fusion as opaque operations of its stream. Other
//! devices use the composite ops.
//!
//! Files: [`runs`] (how a view's elements map to parameters, and how large views are cut into
//! parts for rayon's threads), [`flex`] (the CPU kernels), [`cube`] (the GPU kernels),
//! [`autodiff`] (the tracked op and its backward), [`observe_rule`] (one observer update of one
//! parameter, which the kernels mirror), [`step_rule`] (an integer bias's step from a
//! quantizer's state), [`entry`] (the `Tensor`-level entry points), [`host`] (where the kernels
//! run), [`two_ops`] (a fused op as its two ops, where one launch cannot do it); this file holds
//! the extension trait.

mod autodiff;
#[cfg(feature = "cube")]
mod cube;
mod entry;
mod flex;
/// Flex tensors' values, contiguous (copied only when not): for the crate's other Flex kernels.
pub(crate) use flex::contiguous as contiguous_flex;
mod host;
mod observe_rule;
mod runs;
mod step_rule;
mod two_ops;

pub(crate) use entry::{
    fused_lsq, fused_lsq_bias, fused_lsq_rows, fused_max_abs, fused_min_max, fused_observe,
    fused_observe_fake_quant, fused_observe_fake_quant_bias, round_to_step_product,
};
pub use host::fused_enabled;
pub(crate) use observe_rule::ObserveRule;
pub(crate) use step_rule::{
    STEP_AFFINE_RANGE, STEP_GIVEN, STEP_LEARNED, STEP_ONE, STEP_SYMMETRIC_RANGE, StepRule,
};
use two_ops::{
    lsq_fake_quant_then_round_bias, observe_fake_quant_then_round_bias, observe_then_fake_quant,
};

/// The smallest scale the kernels apply (`SCALE_EPS`): a scale below it is clamped up, and gets
/// no gradient, as `scale.clamp_min(SCALE_EPS)` would do in the composite ops. Clamping inside
/// the kernels spares a learned scale two tensor ops per step (the clamp and its backward).
pub(crate) const SCALE_FLOOR: f32 = crate::SCALE_EPS as f32;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, backend_extension};
// What the extension macro's burn-fusion wrappers name.
#[cfg(feature = "cube")]
use burn::{
    backend::{DType, fusion::custom::TensorSpec},
    tensor::Shape,
};

/// What [`FakeQuantKernels::observe_range`] returns: `((min, max), (scale, zero_point))`.
pub type Observed<B> = (
    (FloatTensor<B>, FloatTensor<B>),
    (FloatTensor<B>, FloatTensor<B>),
);

/// An observer's new running range, `(min, max)`: what [`FakeQuantKernels::observe_fake_quant`]
/// returns of its update. The qparams it computed stay inside the op: its one caller never read
/// them, and under burn-fusion every output is one more tensor of the stream to create and free.
pub type Range<B> = (FloatTensor<B>, FloatTensor<B>);

/// Fused fake-quant kernels; implemented for Flex and CubeCL, dispatched from `Tensor`s by
/// [`fused_lsq`] and friends. Under burn-fusion (`Fusion`) each call is one opaque operation
/// of the stream, described by the `#[fusion(meta)]` output shapes.
#[backend_extension(
    Flex,
    Autodiff,
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube")
)]
pub trait FakeQuantKernels: Backend {
    /// Per-parameter `max |x|` of `x` viewed as `[o, g, l, i]` (one pass, no transposes).
    #[fusion(meta = |x, _view, _pg, n| TensorSpec::new(Shape::new([*n]), x.dtype))]
    fn max_abs_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> FloatTensor<Self>;

    /// Per-parameter `(min, max)` of `x` viewed as `[o, g, l, i]` (one pass, no transposes).
    #[fusion(meta = |x, _view, _pg, n| {
        let spec = TensorSpec::new(Shape::new([*n]), x.dtype);
        (spec.clone(), spec)
    })]
    fn min_max_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// One observer update in one kernel (on a GPU: one launch, after one more for tensors with
    /// over 4096 elements per parameter): the per-parameter range of `x` viewed as `[o, g, l, i]`
    /// folded into the running `min` / `max` (`[n]` each) and the qparams of the result, by
    /// `rule` (see [`ObserveRule`]). Returns `((min, max), (scale, zero_point))`, `[n]` each.
    /// `min` and `max` are read only when `averaging < 1` (running extremes or a moving
    /// average): otherwise any tensor will do (a per-token quantizer has no running range).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _min, _max, _view, _pg, n, _sym, _avg, _lo, _hi, _szp, _eps| {
        let spec = TensorSpec::new(Shape::new([*n]), x.dtype);
        ((spec.clone(), spec.clone()), (spec.clone(), spec))
    })]
    fn observe_range(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
    ) -> (
        (FloatTensor<Self>, FloatTensor<Self>),
        (FloatTensor<Self>, FloatTensor<Self>),
    );

    /// [`Self::observe_range`] and then fixed-scale fake quantization of `x` with the qparams it
    /// computed (on the same grid `qmin..=qmax`): `((new min, new max), (dq, mask))`, `dq` of the
    /// view's shape; the qparams themselves are not returned (a caller wanting them calls
    /// `observe_range`). With `keep_mask` also the clip mask of [`Self::fake_quant_with_mask`],
    /// for the backward pass of a tensor the new range may clip (an activation under a moving
    /// average); without it `mask` is empty: for a tensor whose freshly observed range cannot
    /// clip it (a symmetric weight grid), so its gradient passes straight through, or one whose
    /// gradient is not taken. On a GPU two launches for any size where the two ops take two or three (a
    /// reduction into atomic range keys, then the update and the fake quantization), and one
    /// when no mask is kept and each parameter fits one reduction cube (a weight's output
    /// channels).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _min, _max, view, _pg, n, _sym, _avg, _lo, _hi, _szp, _eps, keep_mask| {
        let spec = TensorSpec::new(Shape::new([*n]), x.dtype);
        let words = if *keep_mask { view.iter().product::<usize>().div_ceil(32) } else { 0 };
        (
            (spec.clone(), spec),
            (
                TensorSpec::new(Shape::new(*view), x.dtype),
                TensorSpec::new(Shape::new([words]), DType::U32),
            ),
        )
    })]
    fn observe_fake_quant(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
        keep_mask: bool,
    ) -> (
        (FloatTensor<Self>, FloatTensor<Self>),
        (FloatTensor<Self>, IntTensor<Self>),
    );

    /// [`Self::observe_fake_quant`] of a weight whose freshly observed range holds it (no mask)
    /// and the layer's `bias` rounded at its accumulator step `s_w · s_x` as
    /// [`Self::round_to_step_product`] rounds it: `s_w` the weight's new step (`rule`'s
    /// [`ObserveRule::step_rule`] of the new range), `s_x` the input quantizer's from its state
    /// `(input_low, input_high)` (`[1]`) by `input_rule`, codes clamped at `±limit`. Returns
    /// `((new min, new max), (dq, rounded bias))`. On a GPU one launch where each output
    /// channel's weights fit one reduction cube, where the rounding took a launch of its own;
    /// the two ops elsewhere.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    #[fusion(meta = |x, _min, _max, bias, _il, _ih, view, _pg, n, _rule, _ir, _limit| {
        let spec = TensorSpec::new(Shape::new([*n]), x.dtype);
        (
            (spec.clone(), spec),
            (
                TensorSpec::new(Shape::new(*view), x.dtype),
                TensorSpec::new(bias.shape.clone(), bias.dtype),
            ),
        )
    })]
    fn observe_fake_quant_bias(
        x: FloatTensor<Self>,
        min: FloatTensor<Self>,
        max: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_low: FloatTensor<Self>,
        input_high: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
        rule: ObserveRule,
        input_rule: StepRule,
        limit: f32,
    ) -> (
        (FloatTensor<Self>, FloatTensor<Self>),
        (FloatTensor<Self>, FloatTensor<Self>),
    );

    /// Backward of [`Self::lsq_fake_quant`] in one pass: `(dx, ds)`, recomputing the clip mask
    /// and `∂x̂/∂s` from `x`; `dx` may reuse `grad`'s memory, `ds` is empty unless `with_scale_grad`,
    /// and multiplied by `grad_factor` (LSQ's gradient scale, so it costs no op of its own);
    /// LSQ+'s zero-point gradient `dzp = Σ grad · ∂x̂/∂zp` likewise when `with_zero_point_grad`
    /// (empty otherwise). With `with_offset` the scale is `scale + scale_offset`, with
    /// `zero_point_from_range` the zero point that of the range `(zero_point, zero_point_high)`
    /// (see [`Self::lsq_fake_quant`]). Returns `((dx, ds), dzp)`.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |grad, _x, s, _so, _z, _zh, _lo, _hi, view, _pg, with_ds, with_dzp, _factor, _wo, _zr| {
        let n = s.shape.num_elements();
        (
            (
                TensorSpec::new(Shape::new(*view), grad.dtype),
                TensorSpec::new(Shape::new([if *with_ds { n } else { 0 }]), grad.dtype),
            ),
            TensorSpec::new(Shape::new([if *with_dzp { n } else { 0 }]), grad.dtype),
        )
    })]
    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
        with_zero_point_grad: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> ((FloatTensor<Self>, FloatTensor<Self>), FloatTensor<Self>);

    /// Fixed-scale fake quantization of a `[o, g, l, i]` view that also returns its clip mask,
    /// one bit per element packed in bytes (1 where `round(x / s)` lies on the grid): a fixed
    /// scale's backward pass needs only the mask, so the tracked op keeps it instead of `x`,
    /// 1/32 of the memory (PyTorch's `fake_quantize_per_tensor_affine_cachemask` keeps a byte).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _s, _z, _lo, _hi, view, _pg| {
        let words = view.iter().product::<usize>().div_ceil(32);
        (
            TensorSpec::new(Shape::new(*view), x.dtype),
            TensorSpec::new(Shape::new([words]), DType::U32),
        )
    })]
    fn fake_quant_with_mask(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (FloatTensor<Self>, IntTensor<Self>);

    /// `grad · mask` for a bit mask from [`Self::fake_quant_with_mask`]; may reuse `grad`'s memory.
    #[fusion(dtype = grad, shape = grad)]
    fn apply_mask(grad: FloatTensor<Self>, mask: IntTensor<Self>) -> FloatTensor<Self>;

    /// LSQ / LSQ+ fake quantization of a `[o, g, l, i]` view, differentiable in `x` (clipped STE)
    /// and in `scale` and `zero_point` where they are tracked (LSQ / LSQ+ gradients times
    /// `grad_factor`, so LSQ's gradient scaling costs no ops of its own), as one forward kernel
    /// and one backward kernel. `clip_free` promises that no element falls outside the grid (see
    /// [`crate::kernels::fake_quantize_view_with`]): with a fixed scale the backward pass then hands the
    /// gradient through untouched. With `with_offset` the scale is `scale + scale_offset`, the
    /// offset untracked: a learned scale stored as `anchor + delta` (`LearnedValue`), added in
    /// the kernels instead of by a launch of its own (`scale_offset` is not read otherwise).
    /// With `zero_point_from_range` (the zero point untracked) `zero_point` and `zero_point_high`
    /// are a range's minima and maxima and the kernels apply that range's zero point (an LSQ
    /// quantizer on an affine grid takes its frozen observer's: computed in the kernels instead
    /// of by an observer launch per step; `zero_point_high` is not read otherwise).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _s, _so, _z, _zh, _lo, _hi, view, _pg, _cf, _gf, _wo, _zr| {
        TensorSpec::new(Shape::new(*view), x.dtype)
    })]
    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        clip_free: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FloatTensor<Self>;

    /// [`Self::lsq_fake_quant`] of a weight under a learned scale stored as `scale_offset +
    /// scale` (anchor + delta; the zero point untracked, given or of a range), with the layer's
    /// `bias` rounded at its accumulator step `s_w · s_x` as [`Self::round_to_step_product`]
    /// rounds it: `s_w` from `(scale_offset, scale)`, `s_x` the input quantizer's from its state
    /// `(input_low, input_high)` (`[1]`), by `grid`'s rules ([`LsqBiasGrid`]). Returns `(dq, rounded bias)`; the bias's gradient passes straight
    /// through. On a GPU the fake-quant launch rounds the bias too, where the rounding took a
    /// launch of its own; the two ops elsewhere.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _s, _so, _z, _zh, bias, _il, _ih, grid| {
        (
            TensorSpec::new(Shape::new(grid.view), x.dtype),
            TensorSpec::new(bias.shape.clone(), bias.dtype),
        )
    })]
    fn lsq_fake_quant_bias(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        input_low: FloatTensor<Self>,
        input_high: FloatTensor<Self>,
        grid: LsqBiasGrid,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// [`Self::lsq_fake_quant`] of rows looked up in a table (an embedding lookup): the `[o, 1,
    /// 1, i]` view holds rows `rows` (`[o]`) of a table whose per-row parameters (`scale`,
    /// `scale_offset`, `zero_point`, `zero_point_high`) are one per table row; the kernel reads
    /// row `rows[r]`'s, where picking them out of the table first took a launch of its own on a
    /// GPU. The scale is a learned one stored as `anchor + delta` when `with_offset`; the zero
    /// point is untracked (given, or of a range with `zero_point_from_range`).
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |x, _s, _so, _z, _zh, _rows, _lo, _hi, view, _gf, _wo, _zr| {
        TensorSpec::new(Shape::new(*view), x.dtype)
    })]
    fn lsq_fake_quant_rows(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        rows: IntTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FloatTensor<Self>;

    /// Backward of [`Self::lsq_fake_quant_rows`]: `(dx, ds)`, `ds` one per table row, each row's
    /// LSQ scale gradient summed over its lookups (times `grad_factor`; 0 for rows not looked
    /// up), as the gradient of picking the rows' scales out of the table would sum it. On a GPU
    /// the backward kernel and one launch that adds the lookups' sums into the table's rows,
    /// where the pick's gradient took a fill and a scatter.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |grad, _x, s, _so, _z, _zh, _rows, _lo, _hi, view, _gf, _wo, _zr| {
        (
            TensorSpec::new(Shape::new(*view), grad.dtype),
            TensorSpec::new(Shape::new([s.shape.num_elements()]), grad.dtype),
        )
    })]
    fn lsq_backward_rows(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scale_offset: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        zero_point_high: FloatTensor<Self>,
        rows: IntTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `round(x / s) · s` with the step `s = s_a · s_b` computed in the kernel from two
    /// quantizers' states, `(a_low, a_high)` and `(b_low, b_high)` (`[1]` each, or one per element
    /// of the flat `x`), by `a_rule` and `b_rule`; codes clamped at `±limit`. The integer bias at
    /// its accumulator step `s_x · s_w` in one launch, where the steps and their product as tensor
    /// ops cost launches of their own. The caller keeps the gradient (straight through).
    #[allow(clippy::too_many_arguments)]
    #[fusion(dtype = x, shape = x)]
    fn round_to_step_product(
        x: FloatTensor<Self>,
        a_low: FloatTensor<Self>,
        a_high: FloatTensor<Self>,
        b_low: FloatTensor<Self>,
        b_high: FloatTensor<Self>,
        a_rule: StepRule,
        b_rule: StepRule,
        limit: f32,
    ) -> FloatTensor<Self>;
}

/// The arguments of [`FakeQuantKernels::lsq_fake_quant_bias`] that are not tensors: the weight's
/// grid `range` (`qmin`, `qmax`) and `view`, LSQ's gradient factor, whether the zero point is that
/// of a range, and how the bias is rounded (the weight's and the input's step rules, the
/// largest code).
#[derive(Debug, Clone, Copy)]
pub struct LsqBiasGrid {
    /// The weight's code range `(qmin, qmax)`.
    pub range: (f32, f32),
    /// The weight's `[o, g, l, i]` view.
    pub view: [usize; 4],
    /// One parameter per group (see `ParamLayout`).
    pub per_group: bool,
    /// LSQ's scale-gradient factor `1 / sqrt(N · Qp)`.
    pub grad_factor: f32,
    /// The zero point is that of the range `(zero_point, zero_point_high)`.
    pub zero_point_from_range: bool,
    /// How the bias's accumulator step is made: the weight's step from `(scale_offset,
    /// scale)`, the input's from its state.
    pub rules: (StepRule, StepRule),
    /// The largest code of the rounded bias.
    pub limit: f32,
}
