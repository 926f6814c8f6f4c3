//! The CubeCL kernels behind [`super`]: the same arithmetic as the Flex kernels, one thread per
//! element (or per mask word), and per-parameter reductions as one cube per (parameter, chunk).
//!
//! Layouts (`mode`, a compile-time constant): 0 one parameter for the whole view; 1 one per
//! channel `gg` of the `[o, g, l, i]` view; 2 one per group `(o, g, i)` (groups run along `l`).
//! Reductions start from `±3.4028235e38` (the largest finite `f32`: WGSL has no infinity literal),
//! written as literals since a Rust constant would be a compile-time value in a `#[cube]` body.
//! Kept apart from the launch code: `#[cube]` expands to `cubecl::` paths, and burn's `Tensor`
//! must not be in scope here.

use cubecl::prelude::*;

use super::super::step_rule::{STEP_GIVEN, STEP_LEARNED, STEP_ONE, STEP_SYMMETRIC_RANGE};

/// The cube size of the reductions (a power of two; every runtime allows 256 units).
pub const REDUCE_UNITS: usize = 256;

/// Layout: one parameter for the whole view.
pub const PER_TENSOR: u32 = 0;
/// Layout: one parameter per channel `gg` of the view.
pub const PER_CHANNEL: u32 = 1;
/// Layout: one parameter per `(o, g, i)`; its elements run along `l`.
pub const PER_GROUP: u32 = 2;

/// Reduction: sum (the scale gradient).
pub const SUM: u32 = 0;
/// Reduction: largest magnitude (symmetric observers).
pub const MAX_ABS: u32 = 1;
/// Reduction: smallest and largest value (affine observers).
pub const MIN_MAX: u32 = 2;
/// Reduction: two sums at once (LSQ+'s scale and zero-point gradients).
pub const SUM_BOTH: u32 = 3;

/// Where element `e` (row-major over the tensor's shape) lies in `t`'s buffer: `e` itself for a
/// contiguous tensor; through its strides when `strided` (a channels-last convolution output, a
/// gradient in another layout), so that no kernel needs its inputs copied into row-major order.
#[cube]
fn at(t: &Tensor<f32>, e: usize, #[comptime] strided: bool) -> usize {
    let mut offset = e;
    if strided {
        offset = 0;
        let mut rest = e;
        let rank = t.rank();
        for k in 0..rank {
            let dim = rank - 1 - k;
            let len = t.shape(dim);
            offset += (rest % len) * t.stride(dim);
            rest /= len;
        }
    }
    offset
}

/// The parameter of flat element `e` of a `[o, g, l, i]` view.
#[cube]
fn param_of(e: usize, g: usize, l: usize, i: usize, #[comptime] mode: u32) -> usize {
    let mut p = 0usize;
    if mode == PER_CHANNEL {
        p = (e / (l * i)) % g;
    } else if mode == PER_GROUP {
        p = (e / (l * i)) * i + e % i;
    }
    p
}

/// The flat element of the `k`-th element of parameter `p`, the inverse of [`param_of`].
#[cube]
fn element_of(p: usize, k: usize, g: usize, l: usize, i: usize, #[comptime] mode: u32) -> usize {
    let mut e = k;
    if mode == PER_CHANNEL {
        let li = l * i;
        e = ((k / li) * g + p) * li + k % li;
    } else if mode == PER_GROUP {
        e = ((p / i) * l + k) * i + p % i;
    }
    e
}

/// One element's quantization: `(code, mask, x/s)` with `code = clamp(round(x/s), lo, hi)` the
/// code offset from the zero point and `mask` 1 where `round(x/s)` lies on the grid. Rounding is
/// half to even on every runtime (`rint` on CUDA, `RoundEven` on SPIR-V and WGSL).
#[cube]
fn quantize(x: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32, f32) {
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
fn grid_of(
    raw: f32,
    zero_point: &Tensor<f32>,
    p: usize,
    qmin: f32,
    qmax: f32,
) -> (f32, f32, f32, f32) {
    grid_from(raw, zero_point[p], qmin, qmax)
}

/// [`grid_of`] with the raw scale and zero point given as values.
#[cube]
fn grid_from(raw: f32, zero_point: f32, qmin: f32, qmax: f32) -> (f32, f32, f32, f32) {
    // Clamped to the smallest scale, `SCALE_EPS` = f32::EPSILON (see `SCALE_FLOOR`).
    let s = max(raw, f32::new(1.1920929e-7));
    let z = clamp(zero_point.round(), qmin, qmax);
    (s, 1.0 / s, qmin - z, qmax - z)
}

/// The zero point of parameter `p`: `zero_point[p]`, or with `from_range` the zero point of the
/// observed range `(zero_point[p], high[p])` (an LSQ quantizer on an affine grid applies its
/// frozen observer's zero point: computed here, where it took an observer launch per step).
#[cube]
fn zero_point_at(
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
fn affine_qparams(low: f32, high: f32, qmin: f32, qmax: f32, eps: f32) -> (f32, f32) {
    let min_neg = min(low, 0.0);
    let max_pos = max(high, 0.0);
    let scale = max((max_pos - min_neg) / (qmax - qmin), eps);
    (scale, clamp(qmin - (min_neg / scale).round(), qmin, qmax))
}

/// The raw scale of parameter `p`: `scale[p]`, plus `offset[p]` when `with_offset` (a learned
/// scale stored as anchor + delta, added here rather than by a launch of its own).
#[cube]
fn raw_scale(
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

/// The grid of parameter `p` from the LSQ kernels' arguments: the raw scale ([`raw_scale`]) and
/// `(s, 1/s, lo, hi)` ([`grid_from`]) with the zero point given or from a range
/// ([`zero_point_at`]). Returns `(raw, s, 1/s, lo, hi)`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn learned_grid(
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
fn table_row(rows: &Tensor<i32>, p: usize, #[comptime] with_rows: bool) -> usize {
    let mut q = p;
    if with_rows {
        q = usize::cast_from(rows[p]);
    }
    q
}

/// Fake quantization, `dq = (q - zp) · s`, one thread per element (parameter `p` reading its
/// grid at [`table_row`]). With `with_bias` (a learned scale stored as `scale_offset + scale`,
/// no rows) thread `e` also rounds element `e` of a layer's bias at its accumulator step
/// `s_w · s_x` into `bias_out`, as [`round_to_step_product`] rounds it: `s_w` by rule `a_*` from
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

/// `grad · mask` for a mask from [`fake_quant_with_mask`], one thread per element.
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

/// Sums `acc` over the cube's units (a tree over `shared`, one slot per unit); every unit gets
/// the total.
#[cube]
fn cube_sum(acc: f32, shared: &mut Shared<[f32]>) -> f32 {
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
fn cube_extreme(acc: f32, shared: &mut Shared<[f32]>, #[comptime] smaller: bool) -> f32 {
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

/// The LSQ / LSQ+ backward pass: `dx = grad · mask` for every element and, per (parameter,
/// chunk) cube, the partial scale gradient `grad_factor · Σ grad · ∂x̂/∂s` into `ds[cube]` and,
/// with `with_dzp`, the zero point's `grad_factor · Σ grad · ∂x̂/∂zp` (`-s` outside the grid)
/// into `dzp[cube]`. Parameter `p`'s `m`
/// elements are cut into `chunks` chunks of `chunk` elements, one cube each.
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

/// The `op` reduction ([`SUM`], [`MAX_ABS`], [`MIN_MAX`]) of elements `start..end` of parameter
/// `p` over the cube's units: `(low, high)` (min, and sum / max / max |x|), known to every unit.
/// `low_in` / `high_in` are what is reduced (the same tensor on a first pass; the partial minima
/// and maxima when partials are combined); `low_in` is read only by [`MIN_MAX`].
#[cube]
#[allow(clippy::too_many_arguments)]
fn reduce_chunk(
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
/// only by [`MIN_MAX`]) and `high[cube]` (see [`reduce_chunk`]).
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

/// One parameter's observer update from its batch range `(low, high)` (`high` = max |x| when
/// `symmetric`): the range folded into the running `(old_min, old_max)` (`averaging`: negative for
/// running extremes, 1 or more for the batch alone, otherwise the moving-average constant; see
/// `ObserveRule`), and the scale and zero point of the result: `(min, max, scale, zero_point)`
/// (PyTorch's observers and `calculate_qparams`, as `Observer::observe` and
/// `qparams_from_range` compute them).
#[cube]
#[allow(clippy::too_many_arguments)]
fn fold_range(
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

/// The runtime half of an integer bias's two step rules (`StepRule`s without their kinds, which
/// are compile-time) and its code limit, for the bias rounding of [`observe`] and [`fake_quant`].
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
/// rule `b_*` — [`round_to_step_product`]'s step, for the kernels that round a bias in the
/// weight's launch.
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulator_step(
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

/// One observer update per parameter, one cube each: the batch range of parameter `p` (max |x|
/// when `symmetric`; from `x` itself or from partial results of [`reduce`]) folded into the
/// running range ([`fold_range`]); unit 0 writes the new min, max, scale and zero point, `n`
/// each. With `fake_quantize` (`low_in` and `high_in` are then `x`) the cube also writes
/// `dq = (q - zp) · s` with the new qparams for the `m` elements it observed, as [`fake_quant`]
/// would (the same values): a weight observed and quantized every step costs one launch. With
/// `with_bias` the cube also rounds the layer's bias at the accumulator step `s_w[p] · s_x` (the
/// integer bias, as [`round_to_step_product`] rounds it): `s_w` the weight's new step by rule
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

/// The order key of `x`: a `u32` whose unsigned order is `x`'s order as a float (NaN aside), so
/// that atomic integer min / max, which every Cube runtime has, reduce floats: a positive
/// float's bits with the sign bit set, a negative float's bits all flipped.
#[cube]
fn order_key(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    let mut key = bits | 0x80000000u32;
    if bits >= 0x80000000u32 {
        key = bits ^ 0xFFFFFFFFu32;
    }
    key
}

/// The float of an [`order_key`].
#[cube]
fn from_order_key(key: u32) -> f32 {
    let mut bits = key ^ 0xFFFFFFFFu32;
    if key >= 0x80000000u32 {
        bits = key ^ 0x80000000u32;
    }
    f32::reinterpret(bits)
}

/// Per (parameter, chunk) cube: the chunk's range (max |x| when `symmetric`, else min and max)
/// folded by atomic min / max into parameter `p`'s [`order_key`]s, `keys[p]` (the minimum; not
/// written when `symmetric`) and `keys[n + p]` (the maximum), which start at the identities
/// (`u32::MAX` and 0). All chunks of every parameter in one launch: the partial ranges need no
/// launch of their own to be combined, whatever the size.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn reduce_to_range_keys(
    x: &Tensor<f32>,
    keys: &mut Tensor<Atomic<u32>>,
    m: usize,
    chunk: usize,
    chunks: usize,
    cubes: usize,
    n: usize,
    g: usize,
    l: usize,
    i: usize,
    #[comptime] mode: u32,
    #[comptime] symmetric: bool,
    #[comptime] strided: bool,
) {
    let cube = CUBE_POS;
    if cube >= cubes {
        terminate!();
    }
    let p = cube / chunks;
    let start = (cube % chunks) * chunk;
    let end = min(start + chunk, m);
    let (low, high) = if symmetric {
        reduce_chunk(x, x, p, start, end, g, l, i, mode, MAX_ABS, strided)
    } else {
        reduce_chunk(x, x, p, start, end, g, l, i, mode, MIN_MAX, strided)
    };
    if UNIT_POS == 0 {
        keys[n + p].fetch_max(order_key(high));
        if !symmetric {
            keys[p].fetch_min(order_key(low));
        }
    }
}

/// Parameter `p`'s observer update from its batch range in `keys` (see [`reduce_to_range_keys`])
/// and its running range: `(min, max, scale, zero_point)` by [`fold_range`].
#[cube]
#[allow(clippy::too_many_arguments)]
fn fold_range_keys(
    keys: &Tensor<u32>,
    old_min: &Tensor<f32>,
    old_max: &Tensor<f32>,
    p: usize,
    n: usize,
    averaging: f32,
    qmin: f32,
    qmax: f32,
    symmetric_zero_point: f32,
    eps: f32,
    #[comptime] symmetric: bool,
) -> (f32, f32, f32, f32) {
    let mut low = f32::new(0.0);
    if !symmetric {
        low = from_order_key(keys[p]);
    }
    fold_range(
        low,
        from_order_key(keys[n + p]),
        old_min[p],
        old_max[p],
        averaging,
        qmin,
        qmax,
        symmetric_zero_point,
        eps,
        symmetric,
    )
}

/// The second launch of an observer update over any number of elements, after
/// [`reduce_to_range_keys`]: each parameter's new range and qparams from its batch range
/// ([`fold_range_keys`], written by the threads `p, p + words, …`), and the fixed-scale fake
/// quantization with those qparams, one thread per 32-bit mask word as in
/// [`fake_quant_with_mask`] (with `with_mask` also its clip mask; without, for a tensor the new
/// range cannot clip, none).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn fold_and_fake_quant(
    x: &Tensor<f32>,
    keys: &Tensor<u32>,
    old_min: &Tensor<f32>,
    old_max: &Tensor<f32>,
    out_min: &mut Tensor<f32>,
    out_max: &mut Tensor<f32>,
    out_scale: &mut Tensor<f32>,
    out_zero_point: &mut Tensor<f32>,
    dq: &mut Tensor<f32>,
    mask: &mut Tensor<u32>,
    averaging: f32,
    qmin: f32,
    qmax: f32,
    symmetric_zero_point: f32,
    eps: f32,
    len: usize,
    words: usize,
    n: usize,
    g: usize,
    l: usize,
    i: usize,
    #[comptime] mode: u32,
    #[comptime] symmetric: bool,
    #[comptime] strided: bool,
    #[comptime] with_mask: bool,
) {
    let t = ABSOLUTE_POS;
    if t >= words {
        terminate!();
    }
    let mut p = t;
    while p < n {
        let (new_min, new_max, scale, zero_point) = fold_range_keys(
            keys,
            old_min,
            old_max,
            p,
            n,
            averaging,
            qmin,
            qmax,
            symmetric_zero_point,
            eps,
            symmetric,
        );
        out_min[p] = new_min;
        out_max[p] = new_max;
        out_scale[p] = scale;
        out_zero_point[p] = zero_point;
        p += words;
    }
    let mut bits = 0u32;
    // The grid of parameter `last`, recomputed only when an element belongs to another one (a
    // per-tensor view: once per thread).
    let mut last = n;
    let mut s = 1.0f32;
    let mut inv = 1.0f32;
    let mut lo = 0.0f32;
    let mut hi = 0.0f32;
    for k in 0..32u32 {
        let e = t + (k as usize) * words;
        if e < len {
            let q = param_of(e, g, l, i, mode);
            if q != last {
                let (_min, _max, scale, zero_point) = fold_range_keys(
                    keys,
                    old_min,
                    old_max,
                    q,
                    n,
                    averaging,
                    qmin,
                    qmax,
                    symmetric_zero_point,
                    eps,
                    symmetric,
                );
                let (s_q, inv_q, lo_q, hi_q) = grid_from(scale, zero_point, qmin, qmax);
                s = s_q;
                inv = inv_q;
                lo = lo_q;
                hi = hi_q;
                last = q;
            }
            // `dq` is laid out as `x` (see `empty_like`).
            let xe = at(x, e, strided);
            let (code, m, _v) = quantize(x[xe], inv, lo, hi);
            dq[xe] = code * s;
            if m == 1.0 {
                bits |= 1u32 << k;
            }
        }
    }
    if with_mask {
        mask[t] = bits;
    }
}

/// One factor of a step from its state `(low, high)` at flat element `e` (`[1]` states serve every
/// element): [`step_from`] of the element's state.
#[cube]
fn step_of(
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
fn step_from(low: f32, high: f32, floor: f32, divisor: f32, #[comptime] kind: u32) -> f32 {
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

/// `round(x / s) · s` clamped at `±limit` codes: one element of [`round_to_step_product`].
#[cube]
fn round_to_step(x: f32, s: f32, limit: f32) -> f32 {
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
