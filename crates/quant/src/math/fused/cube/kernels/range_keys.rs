//! An observer update with the fake quantization it feeds over any number of elements, in two
//! launches: the reduction cubes fold their ranges into each parameter's range by atomic min /
//! max on order-preserving `u32` keys, then one kernel updates the observer from the keys and
//! fake-quantizes, keeping the clip mask.

use cubecl::prelude::*;

use super::grid::{grid_from, quantize};
use super::layout::{at, param_of};
use super::observer::fold_range;
use super::reduction::reduce_chunk;
use super::{MAX_ABS, MIN_MAX};

/// The order key of `x`: a `u32` whose unsigned order is `x`'s order as a float (NaN aside), so
/// that atomic integer min / max, which every Cube runtime has, reduce floats: a positive
/// float's bits with the sign bit set, a negative float's bits all flipped.
#[cube]
pub(super) fn order_key(x: f32) -> u32 {
    let bits = u32::reinterpret(x);
    let mut key = bits | 0x80000000u32;
    if bits >= 0x80000000u32 {
        key = bits ^ 0xFFFFFFFFu32;
    }
    key
}

/// The float of an [`order_key()`].
#[cube]
pub(super) fn from_order_key(key: u32) -> f32 {
    let mut bits = key ^ 0xFFFFFFFFu32;
    if key >= 0x80000000u32 {
        bits = key ^ 0x80000000u32;
    }
    f32::reinterpret(bits)
}

/// Per (parameter, chunk) cube: the chunk's range (max |x| when `symmetric`, else min and max)
/// folded by atomic min / max into parameter `p`'s [`order_key()`]s, `keys[p]` (the minimum; not
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

/// Parameter `p`'s observer update from its batch range in `keys` (see [`reduce_to_range_keys()`])
/// and its running range: `(min, max, scale, zero_point)` by [`fold_range()`].
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn fold_range_keys(
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
/// [`reduce_to_range_keys()`]: each parameter's new range and qparams from its batch range
/// ([`fold_range_keys()`], written by the threads `p, p + words, …`), and the fixed-scale fake
/// quantization with those qparams, one thread per 32-bit mask word as in
/// `fake_quant_with_mask` (with `with_mask` also its clip mask; without, for a tensor the new
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
