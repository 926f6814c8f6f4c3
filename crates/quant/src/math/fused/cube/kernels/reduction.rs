//! Reductions over a cube's units and the per-(parameter, chunk) reduction kernel: sums (the
//! scale gradients' partial sums), max |x| and min / max (the observers' batch ranges).

use cubecl::prelude::*;

use super::layout::{at, element_of};
use super::{MAX_ABS, MIN_MAX, REDUCE_UNITS, SUM, SUM_BOTH};

/// Sums `acc` over the cube's units (a tree over `shared`, one slot per unit); every unit gets
/// the total.
#[cube]
pub(super) fn cube_sum(acc: f32, shared: &mut Shared<[f32]>) -> f32 {
    shared[UNIT_POS as usize] = acc;
    sync_cube();
    let mut active = CUBE_DIM;
    let mut jump = 1u32;
    while active > 1 {
        active /= 2;
        let destination = jump * 2 * UNIT_POS;
        let origin = jump * (2 * UNIT_POS + 1);
        if UNIT_POS < active {
            let value = shared[origin as usize];
            shared[destination as usize] += value;
        }
        jump *= 2;
        sync_cube();
    }
    shared[0]
}

/// Reduces `acc` over the cube's units by min (`smaller`) or max; every unit gets the result.
#[cube]
pub(super) fn cube_extreme(acc: f32, shared: &mut Shared<[f32]>, #[comptime] smaller: bool) -> f32 {
    shared[UNIT_POS as usize] = acc;
    sync_cube();
    let mut active = CUBE_DIM;
    let mut jump = 1u32;
    while active > 1 {
        active /= 2;
        let destination = jump * 2 * UNIT_POS;
        let origin = jump * (2 * UNIT_POS + 1);
        if UNIT_POS < active {
            let value = shared[origin as usize];
            let current = shared[destination as usize];
            if smaller {
                shared[destination as usize] = min(current, value);
            } else {
                shared[destination as usize] = max(current, value);
            }
        }
        jump *= 2;
        sync_cube();
    }
    shared[0]
}

/// The `op` reduction ([`SUM`], [`MAX_ABS`], [`MIN_MAX`]) of elements `start..end` of parameter
/// `p` over the cube's units: `(low, high)` (min, and sum / max / max |x|), known to every unit.
/// `low_in` / `high_in` are what is reduced (the same tensor on a first pass; the partial minima
/// and maxima when partials are combined); `low_in` is read only by [`MIN_MAX`].
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn reduce_chunk(
    low_in: &Tensor<f32>,
    high_in: &Tensor<f32>,
    p: usize,
    start: usize,
    end: usize,
    g: usize,
    l: usize,
    i: usize,
    #[comptime] mode: u32,
    #[comptime] op: u32,
    #[comptime] strided: bool,
) -> (f32, f32) {
    let mut lo_acc = f32::new(3.4028235e38);
    let mut hi_acc = f32::new(-3.4028235e38);
    if op == SUM || op == SUM_BOTH {
        lo_acc = 0.0;
        hi_acc = 0.0;
    }
    let mut k = start + UNIT_POS as usize;
    while k < end {
        let e = element_of(p, k, g, l, i, mode);
        let high_e = at(high_in, e, strided);
        if op == SUM {
            hi_acc += high_in[high_e];
        } else if op == SUM_BOTH {
            lo_acc += low_in[at(low_in, e, strided)];
            hi_acc += high_in[high_e];
        } else if op == MAX_ABS {
            hi_acc = max(hi_acc, high_in[high_e].abs());
        } else {
            lo_acc = min(lo_acc, low_in[at(low_in, e, strided)]);
            hi_acc = max(hi_acc, high_in[high_e]);
        }
        k += REDUCE_UNITS;
    }
    let mut shared = Shared::new_slice(REDUCE_UNITS);
    let high_total = if op == SUM || op == SUM_BOTH {
        cube_sum(hi_acc, &mut shared)
    } else {
        cube_extreme(hi_acc, &mut shared, false)
    };
    let low_total = if op == MIN_MAX {
        sync_cube();
        cube_extreme(lo_acc, &mut shared, true)
    } else if op == SUM_BOTH {
        sync_cube();
        cube_sum(lo_acc, &mut shared)
    } else {
        f32::new(0.0)
    };
    (low_total, high_total)
}

/// Per (parameter, chunk) cube: the `op` reduction of the chunk into `low[cube]` (min, written
/// only by [`MIN_MAX`]) and `high[cube]` (see [`reduce_chunk()`]).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn reduce(
    low_in: &Tensor<f32>,
    high_in: &Tensor<f32>,
    low: &mut Tensor<f32>,
    high: &mut Tensor<f32>,
    m: usize,
    chunk: usize,
    chunks: usize,
    cubes: usize,
    g: usize,
    l: usize,
    i: usize,
    #[comptime] mode: u32,
    #[comptime] op: u32,
    #[comptime] strided: bool,
) {
    let cube = CUBE_POS;
    if cube >= cubes {
        terminate!();
    }
    let p = cube / chunks;
    let start = (cube % chunks) * chunk;
    let end = min(start + chunk, m);
    let (low_total, high_total) =
        reduce_chunk(low_in, high_in, p, start, end, g, l, i, mode, op, strided);
    if UNIT_POS == 0 {
        if op == MIN_MAX || op == SUM_BOTH {
            low[cube] = low_total;
        }
        high[cube] = high_total;
    }
}
