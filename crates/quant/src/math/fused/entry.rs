//! The `Tensor`-level entry points of the fused kernels: each returns `None` where no kernels
//! run (another device, another dtype, `QUANT_FUSED=off`), and its caller then runs the
//! composite ops, which have the same values and gradients.

use burn::backend::Dispatch;
use burn::tensor::{DispatchTensor, Int, Tensor};

use super::super::StepSource;
use super::host::{has_kernels, kernel_host};
use super::{FakeQuantKernels, LsqBiasGrid, ObserveRule, STEP_ONE, StepRule};
use crate::no_grad;

/// Fake quantization through the fused kernels (one forward, one backward pass), or `None` where
/// they do not run: LSQ / LSQ+ when `scale` / `zero_point` are tracked (their gradients
/// multiplied by `grad_factor`), the clipped STE with a fixed grid when neither is (the plain
/// STE when `clip_free`). `scale` and `zero_point` are flat `[n]`; the scale applied is
/// `scale + scale_offset` with an (untracked) offset; with `zero_point_high` the zero point
/// applied is that of the range `(zero_point, zero_point_high)` (untracked).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_lsq(
    x: &Tensor<4>,
    scale: Tensor<1>,
    scale_offset: Option<Tensor<1>>,
    zero_point: Tensor<1>,
    zero_point_high: Option<Tensor<1>>,
    (qmin, qmax): (i32, i32),
    per_group: bool,
    clip_free: bool,
    grad_factor: f64,
) -> Option<Tensor<4>> {
    if !has_kernels(x) {
        return None;
    }
    let view = x.dims();
    let (scale_offset, with_offset) = optional_input(scale_offset, &scale);
    let (zero_point_high, from_range) = optional_input(zero_point_high, &zero_point);
    let out = <Dispatch as FakeQuantKernels>::lsq_fake_quant(
        x.clone().into_dispatch(),
        scale.into_dispatch(),
        scale_offset,
        zero_point.into_dispatch(),
        zero_point_high,
        qmin as f32,
        qmax as f32,
        view,
        per_group,
        clip_free,
        grad_factor as f32,
        with_offset,
        from_range,
    );
    Some(Tensor::from_dispatch(out))
}

/// [`fused_lsq`] of a weight under a learned scale stored as `anchor + delta` (`delta` tracked;
/// `zero_point` untracked, with `zero_point_high` that of the range), with the layer's `bias`
/// rounded at `s_w · s_x` for the weight's step `weight` (of `anchor` and `delta`) and the
/// input quantizer's `input` (see [`FakeQuantKernels::lsq_fake_quant_bias`]): `(dq, rounded
/// bias)`, the bias's gradient straight through; or `None` where the fused kernels do not run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_lsq_bias(
    x: &Tensor<4>,
    (anchor, delta): (Tensor<1>, Tensor<1>),
    (zero_point, zero_point_high): (Tensor<1>, Option<Tensor<1>>),
    (qmin, qmax): (i32, i32),
    per_group: bool,
    grad_factor: f64,
    bias: Tensor<1>,
    (weight, input): (StepRule, &StepSource),
) -> Option<(Tensor<4>, Tensor<1>)> {
    if !has_kernels(x) {
        return None;
    }
    let (zero_point_high, from_range) = optional_input(zero_point_high, &zero_point);
    let (dq, rounded) = <Dispatch as FakeQuantKernels>::lsq_fake_quant_bias(
        x.clone().into_dispatch(),
        delta.into_dispatch(),
        no_grad(anchor).into_dispatch(),
        no_grad(zero_point).into_dispatch(),
        zero_point_high,
        bias.into_dispatch(),
        input.low.clone().into_dispatch(),
        input.high.clone().into_dispatch(),
        LsqBiasGrid {
            range: (qmin as f32, qmax as f32),
            view: x.dims(),
            per_group,
            grad_factor: grad_factor as f32,
            zero_point_from_range: from_range,
            rules: (weight, input.rule),
            limit: BIAS_CODE_LIMIT,
        },
    );
    Some((Tensor::from_dispatch(dq), Tensor::from_dispatch(rounded)))
}

/// An optional untracked input of the LSQ kernels (a scale offset, a range's maxima) as what
/// is passed, and whether the kernels read it: without one `stand_in` is passed, unread.
pub(super) fn optional_input(t: Option<Tensor<1>>, stand_in: &Tensor<1>) -> (DispatchTensor, bool) {
    let read = t.is_some();
    let t = t.unwrap_or_else(|| stand_in.clone());
    (no_grad(t).into_dispatch(), read)
}

/// LSQ fake quantization of rows `rows` of a table, `x` their `[o, 1, 1, i]` view, each row on
/// its table row's grid: `scale` (tracked: its gradient sums over each row's lookups),
/// `scale_offset`, `zero_point` and, with it, `zero_point_high` (a range whose zero point is
/// applied) are one per table row. `None` where the fused kernels do not run. See
/// [`FakeQuantKernels::lsq_fake_quant_rows`].
pub(crate) fn fused_lsq_rows(
    x: &Tensor<4>,
    (scale, scale_offset): (Tensor<1>, Option<Tensor<1>>),
    (zero_point, zero_point_high): (Tensor<1>, Option<Tensor<1>>),
    rows: &Tensor<1, Int>,
    (qmin, qmax): (i32, i32),
    grad_factor: f64,
) -> Option<Tensor<4>> {
    if !has_kernels(x) {
        return None;
    }
    let view = x.dims();
    let (scale_offset, with_offset) = optional_input(scale_offset, &scale);
    let (zero_point_high, from_range) = optional_input(zero_point_high, &zero_point);
    let out = <Dispatch as FakeQuantKernels>::lsq_fake_quant_rows(
        x.clone().into_dispatch(),
        scale.into_dispatch(),
        scale_offset,
        no_grad(zero_point).into_dispatch(),
        zero_point_high,
        rows.clone().into_dispatch(),
        qmin as f32,
        qmax as f32,
        view,
        grad_factor as f32,
        with_offset,
        from_range,
    );
    Some(Tensor::from_dispatch(out))
}

/// The largest code [`round_to_step_product`] keeps: the integer engine refuses a bias past 2^30
/// steps.
pub(super) const BIAS_CODE_LIMIT: f32 = (1u32 << 30) as f32;

/// `round(x / (s_a · s_b)) · s_a · s_b` with a straight-through gradient for `x` (`s_b` = 1
/// without `b`), the steps computed from their sources inside one kernel, and no backward launch;
/// or `None` where the fused kernels do not run. See [`FakeQuantKernels::round_to_step_product`].
pub(crate) fn round_to_step_product(
    x: &Tensor<1>,
    a: &StepSource,
    b: Option<&StepSource>,
) -> Option<Tensor<1>> {
    kernel_host(&x.device(), x.dtype())?;
    let one = StepRule {
        kind: STEP_ONE,
        floor: 0.0,
        divisor: 1.0,
    };
    let (b_low, b_high, b_rule) = match b {
        Some(b) => (b.low.clone(), b.high.clone(), b.rule),
        // Not read under `STEP_ONE`.
        None => (a.low.clone(), a.high.clone(), one),
    };
    let out = <Dispatch as FakeQuantKernels>::round_to_step_product(
        x.clone().into_dispatch(),
        a.low.clone().into_dispatch(),
        a.high.clone().into_dispatch(),
        b_low.into_dispatch(),
        b_high.into_dispatch(),
        a.rule,
        b_rule,
        BIAS_CODE_LIMIT,
    );
    Some(Tensor::from_dispatch(out))
}

/// `x` without its autodiff wrapper, and a function that puts results back on `x`'s device kind.
pub(super) fn untracked(x: &Tensor<4>) -> (Tensor<4>, impl Fn(Tensor<1>) -> Tensor<1>) {
    let autodiff = x.device().is_autodiff();
    let inner = if autodiff {
        x.clone().inner()
    } else {
        x.clone()
    };
    let rewrap = move |t: Tensor<1>| if autodiff { Tensor::from_inner(t) } else { t };
    (inner, rewrap)
}

/// Per-parameter `max |x|` of a view through the Flex kernel, or `None` off Flex.
pub(crate) fn fused_max_abs(
    x: &Tensor<4>,
    per_group: bool,
    num_params: usize,
) -> Option<Tensor<1>> {
    if !has_kernels(x) {
        return None;
    }
    let (inner, rewrap) = untracked(x);
    let view = x.dims();
    let out = <Dispatch as FakeQuantKernels>::max_abs_per_param(
        inner.into_dispatch(),
        view,
        per_group,
        num_params,
    );
    Some(rewrap(Tensor::from_dispatch(out)))
}

/// Per-parameter `(min, max)` of a view through the Flex kernel, or `None` off Flex.
pub(crate) fn fused_min_max(
    x: &Tensor<4>,
    per_group: bool,
    num_params: usize,
) -> Option<(Tensor<1>, Tensor<1>)> {
    if !has_kernels(x) {
        return None;
    }
    let (inner, rewrap) = untracked(x);
    let view = x.dims();
    let (min, max) = <Dispatch as FakeQuantKernels>::min_max_per_param(
        inner.into_dispatch(),
        view,
        per_group,
        num_params,
    );
    Some((
        rewrap(Tensor::from_dispatch(min)),
        rewrap(Tensor::from_dispatch(max)),
    ))
}

/// One fused observer update (see [`FakeQuantKernels::observe_range`]): the new running
/// `(min, max)` and the qparams `(scale, zero_point)` from them, `[n]` each, without gradients; or
/// `None` where the fused kernels do not run.
pub(crate) fn fused_observe(
    x: &Tensor<4>,
    running: Option<(Tensor<1>, Tensor<1>)>,
    per_group: bool,
    num_params: usize,
    rule: ObserveRule,
) -> Option<[Tensor<1>; 4]> {
    if !has_kernels(x) {
        return None;
    }
    let (inner, rewrap) = untracked(x);
    let autodiff = x.device().is_autodiff();
    let plain = |t: Tensor<1>| if autodiff { t.inner() } else { t };
    let view = x.dims();
    // Without a running range (a per-token quantizer), the input stands in: it is not read.
    let (min, max) = match running {
        Some((min, max)) => (plain(min), plain(max)),
        None => {
            let stand_in = inner.clone().reshape([view.iter().product::<usize>()]);
            (stand_in.clone(), stand_in)
        }
    };
    let ((min, max), (scale, zero_point)) = <Dispatch as FakeQuantKernels>::observe_range(
        inner.into_dispatch(),
        min.into_dispatch(),
        max.into_dispatch(),
        view,
        per_group,
        num_params,
        rule.symmetric,
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
    );
    Some([min, max, scale, zero_point].map(|t| rewrap(Tensor::<1>::from_dispatch(t))))
}

/// One fused observer update of `x` and its fake quantization with the new qparams (see
/// [`FakeQuantKernels::observe_fake_quant`]): `((min, max), dq)`, the observer's new range without
/// gradients and `dq` with `x`'s gradient masked where the new range clips it
/// (`clip_free`: it cannot, and the gradient passes straight through); or `None` where the fused
/// kernels do not run.
pub(crate) fn fused_observe_fake_quant(
    x: &Tensor<4>,
    (min, max): (Tensor<1>, Tensor<1>),
    per_group: bool,
    num_params: usize,
    rule: ObserveRule,
    clip_free: bool,
) -> Option<((Tensor<1>, Tensor<1>), Tensor<4>)> {
    if !has_kernels(x) {
        return None;
    }
    // A mask is kept only for a gradient that may be clipped.
    let keep_mask = !clip_free && x.device().is_autodiff();
    let ((min, max), (dq, _mask)) = <Dispatch as FakeQuantKernels>::observe_fake_quant(
        x.clone().into_dispatch(),
        min.into_dispatch(),
        max.into_dispatch(),
        x.dims(),
        per_group,
        num_params,
        rule.symmetric,
        rule.averaging,
        rule.qmin,
        rule.qmax,
        rule.symmetric_zero_point,
        rule.eps,
        keep_mask,
    );
    Some((
        (Tensor::from_dispatch(min), Tensor::from_dispatch(max)),
        Tensor::from_dispatch(dq),
    ))
}

/// [`fused_observe_fake_quant`] of a weight whose new range cannot clip it (`clip_free`), with
/// the layer's `bias` rounded at `s_w · s_x` for the input quantizer's step `input` (see
/// [`FakeQuantKernels::observe_fake_quant_bias`]): `((min, max), dq, rounded bias)`, the bias's
/// gradient straight through; or `None` where the fused kernels do not run.
pub(crate) fn fused_observe_fake_quant_bias(
    x: &Tensor<4>,
    (min, max): (Tensor<1>, Tensor<1>),
    bias: Tensor<1>,
    input: &StepSource,
    (per_group, num_params): (bool, usize),
    rule: ObserveRule,
) -> Option<((Tensor<1>, Tensor<1>), Tensor<4>, Tensor<1>)> {
    if !has_kernels(x) {
        return None;
    }
    let ((min, max), (dq, rounded)) = <Dispatch as FakeQuantKernels>::observe_fake_quant_bias(
        x.clone().into_dispatch(),
        min.into_dispatch(),
        max.into_dispatch(),
        bias.into_dispatch(),
        input.low.clone().into_dispatch(),
        input.high.clone().into_dispatch(),
        x.dims(),
        per_group,
        num_params,
        rule,
        input.rule,
        BIAS_CODE_LIMIT,
    );
    Some((
        (Tensor::from_dispatch(min), Tensor::from_dispatch(max)),
        Tensor::from_dispatch(dq),
        Tensor::from_dispatch(rounded),
    ))
}
