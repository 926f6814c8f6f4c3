//! The LSQ / LSQ+ backward kernel (input gradient and the scale's and zero point's partial sums
//! in one launch) and the per-row sum of a table's scale gradient.

use cubecl::prelude::*;

use super::REDUCE_UNITS;
use super::grid::{learned_grid, quantize, table_row};
use super::layout::{at, element_of};
use super::reduction::cube_sum;

/// The LSQ / LSQ+ backward pass: `dx = grad · mask` for every element and, per (parameter,
/// chunk) cube, the partial scale gradient `grad_factor · Σ grad · ∂x̂/∂s` into
/// `ds[cube]` and, with `with_dzp`, the zero point's `grad_factor · Σ grad · ∂x̂/∂zp` (`-s`
/// outside the grid) into `dzp[cube]`. Parameter `p`'s `m` elements are cut into `chunks`
/// chunks of `chunk` elements, one cube each.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn lsq_backward(
    grad: &Tensor<f32>,
    x: &Tensor<f32>,
    scale: &Tensor<f32>,
    scale_offset: &Tensor<f32>,
    zero_point: &Tensor<f32>,
    zero_point_high: &Tensor<f32>,
    rows: &Tensor<i32>,
    dx: &mut Tensor<f32>,
    ds: &mut Tensor<f32>,
    dzp: &mut Tensor<f32>,
    m: usize,
    chunk: usize,
    chunks: usize,
    cubes: usize,
    g: usize,
    l: usize,
    i: usize,
    qmin: f32,
    qmax: f32,
    grad_factor: f32,
    #[comptime] mode: u32,
    #[comptime] with_dzp: bool,
    #[comptime] strided: bool,
    #[comptime] with_offset: bool,
    #[comptime] zero_point_from_range: bool,
    #[comptime] with_rows: bool,
) {
    let cube = CUBE_POS;
    if cube >= cubes {
        terminate!();
    }
    let p = cube / chunks;
    let start = (cube % chunks) * chunk;
    let end = min(start + chunk, m);
    let (raw, s, inv, lo, hi) = learned_grid(
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
    let mut acc = 0.0f32;
    let mut acc_zp = 0.0f32;
    let mut k = start + UNIT_POS as usize;
    while k < end {
        let e = element_of(p, k, g, l, i, mode);
        // `dx` is laid out as `grad` (see `empty_like`).
        let ge = at(grad, e, strided);
        let gr = grad[ge];
        let (code, mask, v) = quantize(x[at(x, e, strided)], inv, lo, hi);
        dx[ge] = gr * mask;
        acc += gr * (code - v * mask);
        if with_dzp {
            acc_zp += gr * (1.0 - mask);
        }
        k += REDUCE_UNITS;
    }
    let mut shared = Shared::new_slice(REDUCE_UNITS);
    let total = cube_sum(acc, &mut shared);
    if UNIT_POS == 0 {
        // No gradient for a scale below the floor it was clamped to.
        let mut kept = total * grad_factor;
        if raw < f32::new(1.1920929e-7) {
            kept = 0.0;
        }
        ds[cube] = kept;
    }
    if with_dzp {
        sync_cube();
        let total_zp = cube_sum(acc_zp, &mut shared);
        if UNIT_POS == 0 {
            dzp[cube] = -s * total_zp * grad_factor;
        }
    }
}

/// A table's per-row scale gradient from its looked-up rows' partial sums, in one cube:
/// `out[r] = Σ_{p : rows[p] = r} Σ_c partials[p · chunks + c]`, 0 for rows not looked up. Unit
/// `u` owns the table rows `r ≡ u (mod REDUCE_UNITS)`: it zeroes them, then adds their lookups'
/// sums in lookup order, so no two units write one row (no atomics) and the sums come out the
/// same on every run. The lookups go through shared memory a tile of `REDUCE_UNITS` at a time,
/// each read from global memory once (its row and its chunks' sum), then scanned by every unit.
/// Where the zeroing was a fill launch and the adding a scatter launch.
#[cube(launch)]
pub fn add_into_table_rows(
    partials: &Tensor<f32>,
    rows: &Tensor<i32>,
    out: &mut Tensor<f32>,
    lookups: usize,
    chunks: usize,
    table_rows: usize,
) {
    let unit = UNIT_POS as usize;
    let mut r = unit;
    while r < table_rows {
        out[r] = 0.0;
        r += REDUCE_UNITS;
    }
    let mut tile_rows = Shared::<[u32]>::new_slice(REDUCE_UNITS);
    let mut tile_sums = Shared::<[f32]>::new_slice(REDUCE_UNITS);
    let mut start = 0usize;
    while start < lookups {
        let p = start + unit;
        // A lookup past the end belongs to no table row.
        let mut row = u32::cast_from(table_rows);
        let mut sum = 0.0f32;
        if p < lookups {
            row = u32::cast_from(rows[p]);
            for c in 0..chunks {
                sum += partials[p * chunks + c];
            }
        }
        tile_rows[unit] = row;
        tile_sums[unit] = sum;
        sync_cube();
        let in_tile = min(REDUCE_UNITS, lookups - start);
        for k in 0..in_tile {
            let row = usize::cast_from(tile_rows[k]);
            if row % REDUCE_UNITS == unit && row < table_rows {
                out[row] += tile_sums[k];
            }
        }
        sync_cube();
        start += REDUCE_UNITS;
    }
}
