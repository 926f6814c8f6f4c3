//! An integer bias's accumulator step `s_w · s_x` from two quantizers' states (the kinds of
//! `StepRule`, compile-time here), the rounding at that step, and the kernel that rounds a bias
//! in a launch of its own (where the weight's kernel cannot).

use cubecl::prelude::*;

use super::super::super::step_rule::{STEP_GIVEN, STEP_LEARNED, STEP_ONE, STEP_SYMMETRIC_RANGE};

/// The runtime half of an integer bias's two step rules (`StepRule`s without their kinds, which
/// are compile-time) and its code limit, for the bias rounding of `observe` and `fake_quant`.
#[derive(CubeLaunch, CubeType)]
pub struct BiasSteps {
    /// The weight's step floor and divisor (`StepRule::floor`, `StepRule::divisor`).
    pub a_floor: f32,
    pub a_divisor: f32,
    /// The input's.
    pub b_floor: f32,
    pub b_divisor: f32,
    /// The largest code.
    pub limit: f32,
}

/// An integer bias's accumulator step `s_w · s_x`: the weight's from its state's values
/// `(w_low, w_high)` by rule `a_*`, the input's from its state `(b_low, b_high)` (one step) by
/// rule `b_*` — [`round_to_step_product()`]'s step, for the kernels that round a bias in the
/// weight's launch.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn accumulator_step(
    w_low: f32,
    w_high: f32,
    b_low: &Tensor<f32>,
    b_high: &Tensor<f32>,
    steps: &BiasSteps,
    #[comptime] a_kind: u32,
    #[comptime] b_kind: u32,
) -> f32 {
    step_from(w_low, w_high, steps.a_floor, steps.a_divisor, a_kind)
        * step_of(b_low, b_high, 0, steps.b_floor, steps.b_divisor, b_kind)
}

/// One factor of a step from its state `(low, high)` at flat element `e` (`[1]` states serve every
/// element): [`step_from()`] of the element's state.
#[cube]
pub(super) fn step_of(
    low: &Tensor<f32>,
    high: &Tensor<f32>,
    e: usize,
    floor: f32,
    divisor: f32,
    #[comptime] kind: u32,
) -> f32 {
    let mut s = 1.0f32;
    if kind != STEP_ONE {
        s = step_from(
            low[e % low.len()],
            high[e % high.len()],
            floor,
            divisor,
            kind,
        );
    }
    s
}

/// One factor of a step from its state's values `(low, high)`: `StepRule::step` line for line,
/// the kind a compile-time constant.
#[cube]
pub(super) fn step_from(
    low: f32,
    high: f32,
    floor: f32,
    divisor: f32,
    #[comptime] kind: u32,
) -> f32 {
    let mut s = 1.0f32;
    if kind == STEP_GIVEN {
        s = low;
    } else if kind == STEP_LEARNED {
        s = max(low + high, floor) / divisor;
    } else if kind != STEP_ONE {
        let min_neg = min(low, 0.0);
        let max_pos = max(high, 0.0);
        let mut bound = max_pos - min_neg;
        if kind == STEP_SYMMETRIC_RANGE {
            bound = max(max_pos, -min_neg);
        }
        s = max(bound / divisor, floor);
    }
    s
}

/// `round(x / s) · s` clamped at `±limit` codes: one element of [`round_to_step_product()`].
#[cube]
pub(super) fn round_to_step(x: f32, s: f32, limit: f32) -> f32 {
    clamp((x / s).round(), -limit, limit) * s
}

/// `round(x / s) · s` with `s = s_a · s_b` computed here from two quantizers' states (the integer
/// bias at its accumulator step), codes clamped at `±limit`, one thread per element.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn round_to_step_product(
    x: &Tensor<f32>,
    a_low: &Tensor<f32>,
    a_high: &Tensor<f32>,
    b_low: &Tensor<f32>,
    b_high: &Tensor<f32>,
    out: &mut Tensor<f32>,
    n: usize,
    a_floor: f32,
    a_divisor: f32,
    b_floor: f32,
    b_divisor: f32,
    limit: f32,
    #[comptime] a_kind: u32,
    #[comptime] b_kind: u32,
) {
    let e = ABSOLUTE_POS;
    if e >= n {
        terminate!();
    }
    let s = step_of(a_low, a_high, e, a_floor, a_divisor, a_kind)
        * step_of(b_low, b_high, e, b_floor, b_divisor, b_kind);
    out[e] = round_to_step(x[e], s, limit);
}
