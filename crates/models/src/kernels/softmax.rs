//! Attention's softmax on Flex, `softmax(scores · scale + mask)` over the keys, forward and
//! backward one pass over each row while it sits in L1, rows split across rayon's threads. The
//! three tracked ops it replaces (scale, mask add, softmax: max, subtract, `exp`, sum, divide)
//! are about ten whole-tensor passes forward and backward, each on one thread, over MiniLM's
//! `[32, 12, 64, 64]` scores, six of them a step.
//!
//! Forward, per row `z = x · scale + m` (the mask row of the row's batch): `y = e^(z − max z) /
//! Σ e^(z − max z)`, with the vectorisable `exp` of the engine's float islands. Backward from the
//! output: `dx = scale · y · (g − Σ g · y)`; no gradient flows into the mask (a constant of the
//! batch's padding).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::approx::exp_nonpositive;
use super::lanes::{LANES, lane_sum};

/// Rows per rayon task: MiniLM's 49,152 rows of 64 make 384 tasks of 32 KiB each.
const ROWS_PER_TASK: usize = 128;

/// The shape of the rows: `keys` per row, `rows_per_batch` consecutive rows (heads × queries)
/// sharing one mask row.
#[derive(Clone, Copy)]
pub(super) struct Rows {
    pub keys: usize,
    pub rows_per_batch: usize,
}

/// Rows of the forward pass starting at row `first`, as a pulp op.
struct Forward<'a> {
    x: &'a [f32],
    out: &'a mut [MaybeUninit<f32>],
    mask: &'a [f32],
    rows: Rows,
    first: usize,
    scale: f32,
}

impl pulp::WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Rows {
            keys,
            rows_per_batch,
        } = self.rows;
        let scale = self.scale;
        let rows = self
            .x
            .chunks_exact(keys)
            .zip(self.out.chunks_exact_mut(keys));
        for (r, (x, out)) in rows.enumerate() {
            let batch = (self.first + r) / rows_per_batch;
            let m = &self.mask[batch * keys..(batch + 1) * keys];
            let x = &x[..keys];
            let mut max = [f32::NEG_INFINITY; LANES];
            for (k, (&x, &m)) in x.iter().zip(m).enumerate() {
                let z = x * scale + m;
                max[k % LANES] = if z > max[k % LANES] {
                    z
                } else {
                    max[k % LANES]
                };
            }
            let max = max.into_iter().fold(f32::NEG_INFINITY, f32::max);
            for ((o, &x), &m) in out.iter_mut().zip(x).zip(m) {
                o.write(exp_nonpositive(x * scale + m - max));
            }
            // SAFETY: every element of the row was written just above.
            let e: &mut [f32] = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
            let inv = 1.0 / lane_sum(keys, |k| e[k]);
            e.iter_mut().for_each(|e| *e *= inv);
        }
    }
}

/// Rows of the backward pass, as a pulp op: `dx` over `grad` in place.
struct Backward<'a> {
    y: &'a [f32],
    grad: &'a mut [f32],
    keys: usize,
    scale: f32,
}

impl pulp::WithSimd for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let (keys, scale) = (self.keys, self.scale);
        for (y, g) in self
            .y
            .chunks_exact(keys)
            .zip(self.grad.chunks_exact_mut(keys))
        {
            let (y, g) = (&y[..keys], &mut g[..keys]);
            let dot = lane_sum(keys, |k| g[k] * y[k]);
            for (g, &y) in g.iter_mut().zip(y) {
                *g = scale * y * (*g - dot);
            }
        }
    }
}

/// `softmax(x · scale + mask)` of the rows of `x` into `out`; `mask` holds one row of `keys`
/// per batch.
pub(super) fn forward(
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    mask: &[f32],
    rows: Rows,
    scale: f32,
) {
    let chunk = ROWS_PER_TASK * rows.keys;
    let arch = pulp::Arch::new();
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .enumerate()
        .for_each(|(task, (out, x))| {
            arch.dispatch(Forward {
                x,
                out,
                mask,
                rows,
                first: task * ROWS_PER_TASK,
                scale,
            })
        });
}

/// The backward pass of [`forward`] from its output `y`: `dx` written over `grad`.
pub(super) fn backward(y: &[f32], grad: &mut [f32], keys: usize, scale: f32) {
    let chunk = ROWS_PER_TASK * keys;
    let arch = pulp::Arch::new();
    grad.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .for_each(|(grad, y)| {
            arch.dispatch(Backward {
                y,
                grad,
                keys,
                scale,
            })
        });
}
