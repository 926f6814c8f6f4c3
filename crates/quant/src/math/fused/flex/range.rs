//! Per-parameter ranges, `(min, max)` or `max |x|`: the observers' reductions.

use burn::backend::flex::FlexTensor;

use super::super::runs::{Run, Runs};
use super::element::LANES;
use super::parts::{Kernel, NoElementFn, Out, split_work};
use super::tensors::contiguous;

/// Per-parameter `(min, max)` (or, with `abs`, `max |x|` in both) over `runs`.
#[inline(always)]
pub(super) fn range_runs(
    runs: &[Run],
    xs: &[f32],
    num_params: usize,
    abs: bool,
) -> (Vec<f32>, Vec<f32>) {
    // `a > b` comparisons compile to vector min/max; NaNs never win.
    #[inline(always)]
    pub(super) fn bigger(a: f32, b: f32) -> f32 {
        if b > a { b } else { a }
    }
    #[inline(always)]
    pub(super) fn smaller(a: f32, b: f32) -> f32 {
        if b < a { b } else { a }
    }
    let fold = |v: f32| if abs { v.abs() } else { v };
    let mut min = vec![f32::INFINITY; if abs { 0 } else { num_params }];
    let mut max = vec![if abs { 0.0 } else { f32::NEG_INFINITY }; num_params];
    for &(start, len, p0, stride) in runs {
        let run = &xs[start..start + len];
        if stride == 0 {
            let mut hi = [max[p0]; LANES];
            let mut lo = [f32::INFINITY; LANES];
            let mut chunks = run.chunks_exact(LANES);
            for c in &mut chunks {
                for k in 0..LANES {
                    hi[k] = bigger(hi[k], fold(c[k]));
                    if !abs {
                        lo[k] = smaller(lo[k], c[k]);
                    }
                }
            }
            for &v in chunks.remainder() {
                hi[0] = bigger(hi[0], fold(v));
                if !abs {
                    lo[0] = smaller(lo[0], v);
                }
            }
            max[p0] = hi.into_iter().fold(max[p0], bigger);
            if !abs {
                min[p0] = lo.into_iter().fold(min[p0], smaller);
            }
        } else {
            // `f32::max`/`min` here: a compare-and-keep would become a masked store.
            for (m, &v) in max[p0..p0 + len].iter_mut().zip(run) {
                *m = m.max(fold(v));
            }
            if !abs {
                for (m, &v) in min[p0..p0 + len].iter_mut().zip(run) {
                    *m = m.min(v);
                }
            }
        }
    }
    (min, max)
}

/// [`range_runs`] over a whole view, split in two for large ones.
pub(super) fn range_per_param(
    x: FlexTensor,
    view: [usize; 4],
    per_group: bool,
    num_params: usize,
    abs: bool,
) -> (Vec<f32>, Vec<f32>) {
    let x = contiguous(x);
    let xs = x
        .as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors");
    let runs = Runs {
        view,
        per_group,
        num_params,
    };
    let kernel: Kernel<'_, NoElementFn> = Kernel::Range { num_params, abs };
    let mut parts = split_work(&runs, xs, Out::Nothing, kernel).into_iter();
    let (mut min, mut max) = parts.next().expect("at least one part");
    for (part_min, part_max) in parts {
        for (m, v) in min.iter_mut().zip(part_min) {
            *m = m.min(v);
        }
        for (m, v) in max.iter_mut().zip(part_max) {
            *m = m.max(v);
        }
    }
    (min, max)
}
