//! An observer update (the batch range folded into the running range, then scale and zero
//! point), and the kernel that runs it one cube per parameter, fake-quantizing the observed
//! tensor and rounding a layer's bias in the same launch when asked.

use cubecl::prelude::*;

use super::grid::{affine_qparams, grid_from, quantize};
use super::integer_bias::{BiasSteps, accumulator_step, round_to_step};
use super::layout::{at, element_of};
use super::reduction::reduce_chunk;
use super::{MAX_ABS, MIN_MAX, REDUCE_UNITS};

/// One parameter's observer update from its batch range `(low, high)` (`high` = max |x| when
/// `symmetric`): the range folded into the running `(old_min, old_max)` (`averaging`: negative for
/// running extremes, 1 or more for the batch alone, otherwise the moving-average constant; see
/// `ObserveRule`), and the scale and zero point of the result: `(min, max, scale, zero_point)`
/// (PyTorch's observers and `calculate_qparams`, as `Observer::observe` and
/// `qparams_from_range` compute them).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn fold_range(
    low: f32,
    high: f32,
    before_min: f32,
    before_max: f32,
    averaging: f32,
    qmin: f32,
    qmax: f32,
    symmetric_zero_point: f32,
    eps: f32,
    #[comptime] symmetric: bool,
) -> (f32, f32, f32, f32) {
    let mut batch_min = low;
    if symmetric {
        batch_min = -high;
    }
    let mut new_min = batch_min;
    let mut new_max = high;
    if averaging < 0.0 {
        new_min = min(before_min, batch_min);
        new_max = max(before_max, high);
    } else if averaging < 1.0 {
        // Nothing observed yet (infinite): the batch's range.
        if before_min.abs() <= 3.4028235e38f32 {
            new_min = before_min + (batch_min - before_min) * averaging;
        }
        if before_max.abs() <= 3.4028235e38f32 {
            new_max = before_max + (high - before_max) * averaging;
        }
    }
    let (scale, zero_point) = if symmetric {
        let bound = max(max(new_max, 0.0), -min(new_min, 0.0));
        (
            max(bound / ((qmax - qmin) / 2.0), eps),
            symmetric_zero_point,
        )
    } else {
        affine_qparams(new_min, new_max, qmin, qmax, eps)
    };
    (new_min, new_max, scale, zero_point)
}

/// One observer update per parameter, one cube each: the batch range of parameter `p` (max |x|
/// when `symmetric`; from `x` itself or from partial results of `reduce`) folded into the
/// running range ([`fold_range()`]); unit 0 writes the new min, max, scale and zero point, `n`
/// each. With `fake_quantize` (`low_in` and `high_in` are then `x`) the cube also writes
/// `dq = (q - zp) · s` with the new qparams for the `m` elements it observed, as `fake_quant`
/// would (the same values): a weight observed and quantized every step costs one launch. With
/// `with_bias` the cube also rounds the layer's bias at the accumulator step `s_w[p] · s_x` (the
/// integer bias, as `round_to_step_product` rounds it): `s_w` the weight's new step by rule
/// `a_*` from the new range, `s_x` the input's from its state `(b_low, b_high)` by rule `b_*`;
/// into `bias_out`, element `p` of `bias` (one weight parameter per output channel) or, for a
/// per-tensor weight (`n` = 1), every element — where the rounding took a launch of its own.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn observe(
    low_in: &Tensor<f32>,
    high_in: &Tensor<f32>,
    old_min: &Tensor<f32>,
    old_max: &Tensor<f32>,
    out_min: &mut Tensor<f32>,
    out_max: &mut Tensor<f32>,
    out_scale: &mut Tensor<f32>,
    out_zero_point: &mut Tensor<f32>,
    dq: &mut Tensor<f32>,
    bias: &Tensor<f32>,
    b_low: &Tensor<f32>,
    b_high: &Tensor<f32>,
    bias_out: &mut Tensor<f32>,
    averaging: f32,
    qmin: f32,
    qmax: f32,
    symmetric_zero_point: f32,
    eps: f32,
    m: usize,
    n: usize,
    g: usize,
    l: usize,
    i: usize,
    bias_steps: BiasSteps,
    #[comptime] mode: u32,
    #[comptime] symmetric: bool,
    #[comptime] strided: bool,
    #[comptime] fake_quantize: bool,
    #[comptime] with_bias: bool,
    #[comptime] a_kind: u32,
    #[comptime] b_kind: u32,
) {
    let p = CUBE_POS;
    if p >= n {
        terminate!();
    }
    let (low, high) = if symmetric {
        reduce_chunk(low_in, high_in, p, 0, m, g, l, i, mode, MAX_ABS, strided)
    } else {
        reduce_chunk(low_in, high_in, p, 0, m, g, l, i, mode, MIN_MAX, strided)
    };
    let (new_min, new_max, scale, zero_point) = fold_range(
        low,
        high,
        old_min[p],
        old_max[p],
        averaging,
        qmin,
        qmax,
        symmetric_zero_point,
        eps,
        symmetric,
    );
    if UNIT_POS == 0 {
        out_min[p] = new_min;
        out_max[p] = new_max;
        out_scale[p] = scale;
        out_zero_point[p] = zero_point;
    }
    if with_bias {
        let s = accumulator_step(new_min, new_max, b_low, b_high, &bias_steps, a_kind, b_kind);
        // Elements p, p + n, p + 2n, …: `p` alone for one parameter per element, all for one
        // parameter (n = 1); spread over the cube's units.
        let mut e = p + UNIT_POS as usize * n;
        while e < bias.len() {
            bias_out[e] = round_to_step(bias[e], s, bias_steps.limit);
            e += REDUCE_UNITS * n;
        }
    }
    if fake_quantize {
        let (s, inv, lo, hi) = grid_from(scale, zero_point, qmin, qmax);
        let mut k = UNIT_POS as usize;
        while k < m {
            // `dq` is laid out as the input (see `empty_like`).
            let xe = at(high_in, element_of(p, k, g, l, i, mode), strided);
            let (code, _mask, _v) = quantize(high_in[xe], inv, lo, hi);
            dq[xe] = code * s;
            k += REDUCE_UNITS;
        }
    }
}
