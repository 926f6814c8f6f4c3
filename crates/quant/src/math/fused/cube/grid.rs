//! The grid arguments of the fake-quant kernels: scale (and a learned scale's offset), zero
//! point (or a range's), and the rows of a table.

use burn_cubecl::tensor::CubeTensor;

use super::tensors::{f32_input, row_indices};

/// The grid arguments every fake-quant kernel takes.
pub(super) struct Grid {
    pub(super) scale: CubeTensor,
    /// Added to `scale` by the kernels that take it (a learned scale's anchor), if any.
    pub(super) scale_offset: Option<CubeTensor>,
    pub(super) zero_point: CubeTensor,
    /// With it, `zero_point` holds a range's minima and this its maxima, and the kernels that
    /// take it apply that range's zero point (see `FakeQuantKernels::lsq_fake_quant`).
    pub(super) zero_point_high: Option<CubeTensor>,
    /// With it the view holds these rows of a table, and each reads its row's parameters (see
    /// `FakeQuantKernels::lsq_fake_quant_rows`).
    pub(super) rows: Option<CubeTensor>,
    pub(super) qmin: f32,
    pub(super) qmax: f32,
}

impl Grid {
    pub(super) fn new(scale: CubeTensor, zero_point: CubeTensor, qmin: f32, qmax: f32) -> Self {
        Self {
            scale: f32_input(scale, "the scale"),
            scale_offset: None,
            zero_point: f32_input(zero_point, "the zero point"),
            zero_point_high: None,
            rows: None,
            qmin,
            qmax,
        }
    }

    /// The grid of rows `rows` looked up in a table whose parameters these are.
    pub(super) fn with_rows(mut self, rows: CubeTensor) -> Self {
        self.rows = Some(row_indices(rows));
        self
    }

    /// The rows argument of a kernel and whether it is read (the scale stands in when not).
    pub(super) fn rows_arg(&self) -> (CubeTensor, bool) {
        match &self.rows {
            Some(rows) => (rows.clone(), true),
            None => (self.scale.clone(), false),
        }
    }

    /// The grid whose zero point is that of the range `(zero_point, high)` when `from_range`.
    pub(super) fn with_zero_point_range(mut self, high: CubeTensor, from_range: bool) -> Self {
        self.zero_point_high = from_range.then(|| f32_input(high, "the range maxima"));
        self
    }

    /// The range-maxima argument of a kernel and whether it is read (the zero point stands in
    /// when not).
    pub(super) fn zero_point_high_arg(&self) -> (CubeTensor, bool) {
        match &self.zero_point_high {
            Some(high) => (high.clone(), true),
            None => (self.zero_point.clone(), false),
        }
    }

    /// The grid of `scale + offset` when `with_offset` (see `FakeQuantKernels::lsq_fake_quant`).
    pub(super) fn with_offset(mut self, offset: CubeTensor, with_offset: bool) -> Self {
        self.scale_offset = with_offset.then(|| f32_input(offset, "the scale offset"));
        self
    }

    /// The offset argument of a kernel and whether it is read (the scale stands in when not).
    pub(super) fn offset_arg(&self) -> (CubeTensor, bool) {
        match &self.scale_offset {
            Some(offset) => (offset.clone(), true),
            None => (self.scale.clone(), false),
        }
    }

    /// The parameters the view is cut into: one per looked-up row, else one per entry.
    pub(super) fn num_params(&self) -> usize {
        self.rows
            .as_ref()
            .unwrap_or(&self.scale)
            .meta
            .shape()
            .num_elements()
    }
}
