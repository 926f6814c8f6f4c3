//! One element's quantization and a parameter's grid (scale, its inverse, the code range) from
//! the kernels' arguments: a given or learned scale, a given zero point or a range's.

use cubecl::prelude::*;

/// One element's quantization: `(code, mask, x/s)` with `code = clamp(round(x/s), lo, hi)` the
/// code offset from the zero point and `mask` 1 where `round(x/s)` lies on the grid. Rounding is
/// half to even on every runtime (`rint` on CUDA, `RoundEven` on SPIR-V and WGSL).
#[cube]
pub(super) fn quantize(x: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32, f32) {
    let v = x * inv;
    let c = clamp(v, lo - 1.0, hi + 1.0).round();
    let code = clamp(c, lo, hi);
    let mut mask = 0.0f32;
    if c == code {
        mask = 1.0;
    }
    (code, mask, v)
}

/// `(scale, 1/scale, lo, hi)` of parameter `p` with the raw scale `raw` (before the floor): the
/// code range is `[qmin - zp, qmax - zp]` with the zero point rounded and clamped onto the grid.
#[cube]
pub(super) fn grid_of(
    raw: f32,
    zero_point: &Tensor<f32>,
    p: usize,
    qmin: f32,
    qmax: f32,
) -> (f32, f32, f32, f32) {
    grid_from(raw, zero_point[p], qmin, qmax)
}

/// [`grid_of()`] with the raw scale and zero point given as values.
#[cube]
pub(super) fn grid_from(raw: f32, zero_point: f32, qmin: f32, qmax: f32) -> (f32, f32, f32, f32) {
    // Clamped to the smallest scale, `SCALE_EPS` = f32::EPSILON (see `SCALE_FLOOR`).
    let s = max(raw, f32::new(1.1920929e-7));
    let z = clamp(zero_point.round(), qmin, qmax);
    (s, 1.0 / s, qmin - z, qmax - z)
}

/// The zero point of parameter `p`: `zero_point[p]`, or with `from_range` the zero point of the
/// observed range `(zero_point[p], high[p])` (an LSQ quantizer on an affine grid applies its
/// frozen observer's zero point: computed here, where it took an observer launch per step).
#[cube]
pub(super) fn zero_point_at(
    zero_point: &Tensor<f32>,
    high: &Tensor<f32>,
    p: usize,
    qmin: f32,
    qmax: f32,
    #[comptime] from_range: bool,
) -> f32 {
    let mut z = zero_point[p];
    if from_range {
        let (_scale, range_zero_point) =
            affine_qparams(zero_point[p], high[p], qmin, qmax, f32::new(1.1920929e-7));
        z = range_zero_point;
    }
    z
}

/// The scale and zero point of an affine grid over the range `(low, high)` (widened to hold 0):
/// PyTorch's `calculate_qparams`, as `qparams_from_range` computes it.
#[cube]
pub(super) fn affine_qparams(low: f32, high: f32, qmin: f32, qmax: f32, eps: f32) -> (f32, f32) {
    let min_neg = min(low, 0.0);
    let max_pos = max(high, 0.0);
    let scale = max((max_pos - min_neg) / (qmax - qmin), eps);
    (scale, clamp(qmin - (min_neg / scale).round(), qmin, qmax))
}

/// The raw scale of parameter `p`: `scale[p]`, plus `offset[p]` when `with_offset` (a learned
/// scale stored as anchor + delta, added here rather than by a launch of its own).
#[cube]
pub(super) fn raw_scale(
    scale: &Tensor<f32>,
    offset: &Tensor<f32>,
    p: usize,
    #[comptime] with_offset: bool,
) -> f32 {
    let mut raw = scale[p];
    if with_offset {
        raw += offset[p];
    }
    raw
}

/// The grid of parameter `p` from the LSQ kernels' arguments: the raw scale ([`raw_scale()`]) and
/// `(s, 1/s, lo, hi)` ([`grid_from()`]) with the zero point given or from a range
/// ([`zero_point_at()`]). Returns `(raw, s, 1/s, lo, hi)`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn learned_grid(
    scale: &Tensor<f32>,
    scale_offset: &Tensor<f32>,
    zero_point: &Tensor<f32>,
    zero_point_high: &Tensor<f32>,
    p: usize,
    qmin: f32,
    qmax: f32,
    #[comptime] with_offset: bool,
    #[comptime] zero_point_from_range: bool,
) -> (f32, f32, f32, f32, f32) {
    let raw = raw_scale(scale, scale_offset, p, with_offset);
    let z = zero_point_at(
        zero_point,
        zero_point_high,
        p,
        qmin,
        qmax,
        zero_point_from_range,
    );
    let (s, inv, lo, hi) = grid_from(raw, z, qmin, qmax);
    (raw, s, inv, lo, hi)
}

/// Which entry of the parameter tensors parameter `p` of the view reads: `rows[p]` when
/// `with_rows` (the view holds rows looked up in a table, whose parameters are one per table row),
/// `p` itself otherwise.
#[cube]
pub(super) fn table_row(rows: &Tensor<i32>, p: usize, #[comptime] with_rows: bool) -> usize {
    let mut q = p;
    if with_rows {
        q = usize::cast_from(rows[p]);
    }
    q
}
