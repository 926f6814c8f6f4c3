//! The elementwise kernels, one thread per element (or per 32-bit mask word): fake quantization
//! (with a learned scale, rows of a table, or a layer's bias rounded in the same launch), fixed-
//! scale fake quantization with its clip mask, the mask applied to a gradient, and the masked
//! gradient of fixed-scale fake quantization.

use cubecl::prelude::*;

use super::grid::{grid_of, learned_grid, quantize, table_row};
use super::integer_bias::{BiasSteps, accumulator_step, round_to_step};
use super::layout::{at, param_of};

/// Fake quantization, `dq = (q - zp) · s`, one thread per element (parameter `p` reading its
/// grid at [`table_row()`]). With `with_bias` (a learned scale stored as `scale_offset + scale`,
/// no rows) thread `e` also rounds element `e` of a layer's bias at its accumulator step
/// `s_w · s_x` into `bias_out`, as `round_to_step_product` rounds it: `s_w` by rule `a_*` from
/// the learned scale's parts of parameter `e` (or of the one parameter), `s_x` the input's from
/// its state `(b_low, b_high)` by rule `b_*` — where the rounding took a launch of its own.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn fake_quant(
    x: &Tensor<f32>,
    scale: &Tensor<f32>,
    scale_offset: &Tensor<f32>,
    zero_point: &Tensor<f32>,
    zero_point_high: &Tensor<f32>,
    rows: &Tensor<i32>,
    out: &mut Tensor<f32>,
    bias: &Tensor<f32>,
    b_low: &Tensor<f32>,
    b_high: &Tensor<f32>,
    bias_out: &mut Tensor<f32>,
    n: usize,
    g: usize,
    l: usize,
    i: usize,
    qmin: f32,
    qmax: f32,
    bias_steps: BiasSteps,
    #[comptime] mode: u32,
    #[comptime] strided: bool,
    #[comptime] with_offset: bool,
    #[comptime] zero_point_from_range: bool,
    #[comptime] with_rows: bool,
    #[comptime] with_bias: bool,
    #[comptime] a_kind: u32,
    #[comptime] b_kind: u32,
) {
    let e = ABSOLUTE_POS;
    if e >= n {
        terminate!();
    }
    if with_bias && e < bias.len() {
        // The learned scale's parts `(anchor, delta)` of parameter `e`, or of the one parameter.
        let (anchor, delta) = (scale_offset[e % scale_offset.len()], scale[e % scale.len()]);
        let s = accumulator_step(anchor, delta, b_low, b_high, &bias_steps, a_kind, b_kind);
        bias_out[e] = round_to_step(bias[e], s, bias_steps.limit);
    }
    let p = param_of(e, g, l, i, mode);
    let (_raw, s, inv, lo, hi) = learned_grid(
        scale,
        scale_offset,
        zero_point,
        zero_point_high,
        table_row(rows, p, with_rows),
        qmin,
        qmax,
        with_offset,
        zero_point_from_range,
    );
    // `out` is laid out as `x` (see `empty_like`).
    let xe = at(x, e, strided);
    let (code, _mask, _v) = quantize(x[xe], inv, lo, hi);
    out[xe] = code * s;
}

/// Fixed-scale fake quantization and its clip mask, one thread per 32-bit mask word: thread `t`
/// takes elements `t, t + W, t + 2W, …` (`W` words), so neighbouring threads read neighbouring
/// elements, and bit `k` of word `t` is element `t + k·W`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn fake_quant_with_mask(
    x: &Tensor<f32>,
    scale: &Tensor<f32>,
    zero_point: &Tensor<f32>,
    dq: &mut Tensor<f32>,
    mask: &mut Tensor<u32>,
    n: usize,
    words: usize,
    g: usize,
    l: usize,
    i: usize,
    qmin: f32,
    qmax: f32,
    #[comptime] mode: u32,
    #[comptime] strided: bool,
) {
    let t = ABSOLUTE_POS;
    if t >= words {
        terminate!();
    }
    let mut bits = 0u32;
    for k in 0..32u32 {
        let e = t + (k as usize) * words;
        if e < n {
            let p = param_of(e, g, l, i, mode);
            let (s, inv, lo, hi) = grid_of(scale[p], zero_point, p, qmin, qmax);
            // `dq` is laid out as `x` (see `empty_like`).
            let xe = at(x, e, strided);
            let (code, m, _v) = quantize(x[xe], inv, lo, hi);
            dq[xe] = code * s;
            if m == 1.0 {
                bits |= 1u32 << k;
            }
        }
    }
    mask[t] = bits;
}

/// `grad · mask` for a mask from [`fake_quant_with_mask()`], one thread per element.
#[cube(launch)]
pub fn apply_mask(
    grad: &Tensor<f32>,
    mask: &Tensor<u32>,
    out: &mut Tensor<f32>,
    n: usize,
    words: usize,
    #[comptime] strided: bool,
) {
    let e = ABSOLUTE_POS;
    if e >= n {
        terminate!();
    }
    let bit = (mask[e % words] >> ((e / words) as u32)) & 1u32;
    // `out` is laid out as `grad` (see `empty_like`).
    let ge = at(grad, e, strided);
    let mut g = 0.0f32;
    if bit == 1u32 {
        g = grad[ge];
    }
    out[ge] = g;
}

/// The input gradient of fake quantization alone, `grad · mask`, one thread per element.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn masked_grad(
    grad: &Tensor<f32>,
    x: &Tensor<f32>,
    scale: &Tensor<f32>,
    zero_point: &Tensor<f32>,
    dx: &mut Tensor<f32>,
    n: usize,
    g: usize,
    l: usize,
    i: usize,
    qmin: f32,
    qmax: f32,
    #[comptime] mode: u32,
    #[comptime] strided: bool,
) {
    let e = ABSOLUTE_POS;
    if e >= n {
        terminate!();
    }
    let p = param_of(e, g, l, i, mode);
    let (_s, inv, lo, hi) = grid_of(scale[p], zero_point, p, qmin, qmax);
    let (_code, mask, _v) = quantize(x[at(x, e, strided)], inv, lo, hi);
    // `dx` is laid out as `grad` (see `empty_like`).
    let ge = at(grad, e, strided);
    dx[ge] = grad[ge] * mask;
}
