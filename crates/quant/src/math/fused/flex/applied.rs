//! What a kernel applies, from the trait's arguments: a learned scale's anchor added, an LSQ
//! quantizer's zero point from its frozen range, the grid constants and the view's runs.

use burn::backend::flex::FlexTensor;

use super::super::runs::Runs;
use super::super::{ObserveRule, SCALE_FLOOR};
use super::grid::Grid;
use super::tensors::{contiguous, f32s, flat};

/// The scale a kernel applies: `scale + offset` with an offset (a learned scale's anchor; a few
/// values, added on the host), else `scale`.
pub(super) fn offset_scale(scale: FlexTensor, offset: FlexTensor, with_offset: bool) -> FlexTensor {
    if !with_offset {
        return scale;
    }
    let offset = f32s(&offset);
    flat(
        f32s(&scale)
            .iter()
            .zip(offset)
            .map(|(s, o)| s + o)
            .collect(),
    )
}

/// The scale and zero point a kernel applies: [`offset_scale`] and [`range_zero_point`].
pub(super) fn applied_grid(
    (scale, offset, with_offset): (FlexTensor, FlexTensor, bool),
    (zero_point, high, from_range): (FlexTensor, FlexTensor, bool),
    (qmin, qmax): (f32, f32),
) -> (FlexTensor, FlexTensor) {
    (
        offset_scale(scale, offset, with_offset),
        range_zero_point(zero_point, high, from_range, qmin, qmax),
    )
}

/// The zero point a kernel applies: `zero_point`, or with `from_range` that of the range
/// `(zero_point, high)` (minima and maxima) on the grid `qmin..=qmax`, as the observer computes
/// it (a few values per quantizer, on the host).
pub(super) fn range_zero_point(
    zero_point: FlexTensor,
    high: FlexTensor,
    from_range: bool,
    qmin: f32,
    qmax: f32,
) -> FlexTensor {
    if !from_range {
        return zero_point;
    }
    let rule = ObserveRule::from_args(false, 0.0, qmin, qmax, 0.0, SCALE_FLOOR);
    let zero_points = f32s(&zero_point)
        .iter()
        .zip(f32s(&high))
        .map(|(&low, high)| rule.apply(low, high, low, high)[3])
        .collect();
    flat(zero_points)
}

/// What an elementwise kernel over a view starts from: `x` contiguous, the grid constants and
/// the view's runs.
pub(super) fn prepare(
    x: FlexTensor,
    scale: &FlexTensor,
    zero_point: &FlexTensor,
    (qmin, qmax): (f32, f32),
    view: [usize; 4],
    per_group: bool,
) -> (FlexTensor, Grid, Runs) {
    let x = contiguous(x);
    assert!(
        x.as_slice::<f32>().is_some(),
        "fused fake-quant takes f32 tensors"
    );
    let grid = Grid::new(scale, zero_point, qmin, qmax);
    let runs = Runs {
        view,
        per_group,
        num_params: grid.scale.len(),
    };
    (x, grid, runs)
}
