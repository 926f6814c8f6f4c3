//! The launches of LSQ's backward kernels.

use burn::backend::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::grid::Grid;
use super::kernels::{self, REDUCE_UNITS};
use super::layout::{REDUCE_CHUNK, ViewLayout, reduction};
use super::tensors::{empty, empty_like, strided};

/// The LSQ / LSQ+ backward kernel over `x` viewed by `layout` on `grid`: `(dx, ds, dzp, chunks)`,
/// `ds` (and with `with_zero_point_grad` `dzp`, else one unread entry) one partial sum per
/// (parameter, chunk), `chunks` per parameter.
pub(super) fn launch_lsq_backward(
    grad: CubeTensor,
    x: CubeTensor,
    grid: &Grid,
    layout: ViewLayout,
    with_zero_point_grad: bool,
    grad_factor: f32,
) -> (CubeTensor, CubeTensor, CubeTensor, usize) {
    let (offset, with_offset) = grid.offset_arg();
    let (high, from_range) = grid.zero_point_high_arg();
    let (rows, with_rows) = grid.rows_arg();
    let dx = empty_like(&grad);
    let strided = strided(&[&grad, &x]);
    let chunks = layout.per_param.div_ceil(REDUCE_CHUNK).max(1);
    let cubes = layout.num_params * chunks;
    let ds = empty(&x, [cubes], DType::F32);
    let dzp = empty(
        &x,
        [if with_zero_point_grad { cubes } else { 1 }],
        DType::F32,
    );
    let (count, dim) = reduction(&x, cubes);
    kernels::lsq_backward::launch(
        &x.client.clone(),
        count,
        dim,
        grad.into_tensor_arg(),
        x.into_tensor_arg(),
        grid.scale.clone().into_tensor_arg(),
        offset.into_tensor_arg(),
        grid.zero_point.clone().into_tensor_arg(),
        high.into_tensor_arg(),
        rows.into_tensor_arg(),
        dx.clone().into_tensor_arg(),
        ds.clone().into_tensor_arg(),
        dzp.clone().into_tensor_arg(),
        layout.per_param,
        REDUCE_CHUNK,
        chunks,
        cubes,
        layout.g,
        layout.l,
        layout.i,
        grid.qmin,
        grid.qmax,
        grad_factor,
        layout.mode,
        with_zero_point_grad,
        strided,
        with_offset,
        from_range,
        with_rows,
    );
    (dx, ds, dzp, chunks)
}

/// A table's per-row scale gradient from the partial sums of its `lookups` looked-up rows
/// (`chunks` each), in one cube: `[table_rows]`, 0 for rows not looked up.
pub(super) fn launch_add_into_table_rows(
    partials: CubeTensor,
    rows: CubeTensor,
    lookups: usize,
    chunks: usize,
    table_rows: usize,
) -> CubeTensor {
    let ds = empty(&partials, [table_rows], DType::F32);
    kernels::add_into_table_rows::launch(
        &partials.client.clone(),
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(REDUCE_UNITS as u32),
        partials.into_tensor_arg(),
        rows.into_tensor_arg(),
        ds.clone().into_tensor_arg(),
        lookups,
        chunks,
        table_rows,
    );
    ds
}
