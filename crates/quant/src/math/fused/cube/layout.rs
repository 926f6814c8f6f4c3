//! How the elements of a `[o, g, l, i]` view map to the kernels' parameters, and the launch
//! grids of the elementwise and the reduction kernels.

use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use super::kernels::{PER_CHANNEL, PER_GROUP, PER_TENSOR, REDUCE_UNITS};

/// Elements one reduction cube takes per parameter (16 per unit): large enough that the partial
/// sums are few, small enough that a per-tensor reduction over an activation still fills the GPU.
pub(super) const REDUCE_CHUNK: usize = REDUCE_UNITS * 16;

/// How the elements of a `[o, g, l, i]` view map to parameters, in the kernels' terms.
#[derive(Debug, Clone, Copy)]
pub(super) struct ViewLayout {
    pub(super) mode: u32,
    pub(super) g: usize,
    pub(super) l: usize,
    pub(super) i: usize,
    /// Elements in the view.
    pub(super) n: usize,
    /// Elements per parameter.
    pub(super) per_param: usize,
    pub(super) num_params: usize,
}

impl ViewLayout {
    pub(super) fn new(view: [usize; 4], per_group: bool, num_params: usize) -> Self {
        let [o, g, l, i] = view;
        let n = o * g * l * i;
        let (mode, per_param) = if num_params == 1 {
            (PER_TENSOR, n)
        } else if per_group {
            (PER_GROUP, l)
        } else {
            (PER_CHANNEL, o * l * i)
        };
        assert_eq!(
            per_param * num_params,
            n,
            "fused fake-quant: {num_params} parameters do not tile a {view:?} view"
        );
        Self {
            mode,
            g,
            l,
            i,
            n,
            per_param,
            num_params,
        }
    }

    /// Partial results of a per-parameter reduction, viewed as `num_params` channels of
    /// `chunks` elements each.
    pub(super) fn partials(num_params: usize, chunks: usize) -> Self {
        Self::new([1, num_params, chunks, 1], false, num_params)
    }
}

/// The launch grid of an elementwise kernel over `n` items.
pub(super) fn elementwise(t: &CubeTensor, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, n);
    (calculate_cube_count_elemwise(&t.client, n, dim), dim)
}

/// The launch grid of `cubes` reduction cubes.
pub(super) fn reduction(t: &CubeTensor, cubes: usize) -> (CubeCount, CubeDim) {
    let count = CubeCountSelection::new(&t.client, cubes as u32).cube_count();
    (count, CubeDim::new_1d(REDUCE_UNITS as u32))
}
