//! How a kernel runs over a view: compiled for the widest vector instructions the CPU has (pulp,
//! chosen at run time), over the whole view or over contiguous parts of it on rayon's workers.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::super::runs::{Run, Runs, split_min};
use super::grid::Grid;
use super::range::range_runs;

/// What a [`Part`] computes over its runs.
#[derive(Clone, Copy)]
pub(super) enum Kernel<'a, F> {
    /// `out = f(x, …)` elementwise into fresh memory ([`Grid::map_runs`]).
    Map(&'a Grid, F),
    /// Fake quantization and its packed clip mask into fresh memory ([`Grid::map_masked_runs`]).
    MapMasked(&'a Grid),
    /// The backward pass in place over `out`, with the scale gradient when asked ([`Grid::backward_runs`]).
    Backward(&'a Grid, bool),
    /// Per-parameter `(min, max)`, or `max |x|` when asked ([`range_runs`]); no `out`.
    Range { num_params: usize, abs: bool },
}

/// A kernel's per-element output: values to update in place, or fresh memory to fill (so a
/// megabyte-sized output is not zeroed first only to be overwritten).
pub(super) enum Out<'a> {
    Update(&'a mut [f32]),
    Fill(&'a mut [MaybeUninit<f32>]),
    /// Fresh values and a zeroed bit mask (8 elements to a byte) to fill.
    FillMasked(&'a mut [MaybeUninit<f32>], &'a mut [u8]),
    Nothing,
}

impl<'a> Out<'a> {
    /// The output of elements `..mid` and `mid..`.
    pub(super) fn split_at(self, mid: usize) -> (Out<'a>, Out<'a>) {
        match self {
            Out::Update(o) => {
                let (a, b) = o.split_at_mut(mid);
                (Out::Update(a), Out::Update(b))
            }
            Out::Fill(o) => {
                let (a, b) = o.split_at_mut(mid);
                (Out::Fill(a), Out::Fill(b))
            }
            Out::FillMasked(o, bits) => {
                assert_eq!(mid % 8, 0, "a bit mask split inside a byte");
                let (a, b) = o.split_at_mut(mid);
                let (bits_a, bits_b) = bits.split_at_mut(mid / 8);
                (Out::FillMasked(a, bits_a), Out::FillMasked(b, bits_b))
            }
            Out::Nothing => (Out::Nothing, Out::Nothing),
        }
    }
}

/// One kernel over some runs of the view, whose output slice starts at element `offset`.
pub(super) struct Part<'a, F> {
    pub(super) kernel: Kernel<'a, F>,
    pub(super) runs: &'a [Run],
    pub(super) xs: &'a [f32],
    pub(super) out: Out<'a>,
    pub(super) offset: usize,
}

/// As a pulp op, a part is compiled again for the widest vector instructions the CPU has (AVX2
/// and FMA on x86-64), chosen at run time: `with_simd` and the kernels are inlined into pulp's
/// target-feature entry point. Outputs: `(ds, [])` for the backward pass, `(min, max)` for ranges.
impl<F: ElementFn> pulp::WithSimd for Part<'_, F> {
    type Output = (Vec<f32>, Vec<f32>);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let Part {
            kernel,
            runs,
            xs,
            out,
            offset,
        } = self;
        match (kernel, out) {
            (Kernel::Map(grid, f), Out::Fill(out)) => {
                grid.map_runs(runs, xs, out, offset, f);
                (Vec::new(), Vec::new())
            }
            (Kernel::MapMasked(grid), Out::FillMasked(out, bits)) => {
                grid.map_masked_runs(runs, xs, out, bits, offset);
                (Vec::new(), Vec::new())
            }
            (Kernel::Backward(grid, with_scale_grad), Out::Update(out)) => {
                let mut ds = vec![0f32; if with_scale_grad { grid.scale.len() } else { 0 }];
                let ds_out = with_scale_grad.then_some(ds.as_mut_slice());
                grid.backward_runs(runs, xs, out, offset, ds_out);
                (ds, Vec::new())
            }
            (Kernel::Range { num_params, abs }, Out::Nothing) => {
                range_runs(runs, xs, num_params, abs)
            }
            _ => unreachable!("a kernel paired with the wrong kind of output"),
        }
    }
}

/// A kernel with no element function (its `F` is never called).
pub(super) type NoElementFn = fn(f32, f32, f32, f32, f32) -> f32;

/// Runs `kernel` over the whole view, or over contiguous parts of it on rayon workers when it is
/// large (see [`split_min`]); `out` (indexed by element) is cut with it. Returns each part's
/// output, lowest elements first.
pub(super) fn split_work<F: ElementFn>(
    runs: &Runs,
    xs: &[f32],
    out: Out<'_>,
    kernel: Kernel<'_, F>,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    let arch = pulp::Arch::new();
    let threads = rayon::current_num_threads();
    let mut parts = runs.parts(threads, split_min(threads));
    if parts.len() == 1 {
        let (_, runs) = parts.pop().expect("one part");
        return vec![arch.dispatch(Part {
            kernel,
            runs: &runs,
            xs,
            out,
            offset: 0,
        })];
    }
    // Cut `out` at each part's first element, back to front.
    let mut outs = Vec::with_capacity(parts.len());
    let mut rest = out;
    for &(first, _) in parts.iter().skip(1).rev() {
        let (low, high) = rest.split_at(first);
        outs.push(high);
        rest = low;
    }
    outs.push(rest);
    outs.reverse();
    parts
        .into_par_iter()
        .zip(outs)
        .map(|((offset, runs), out)| {
            arch.dispatch(Part {
                kernel,
                runs: &runs,
                xs,
                out,
                offset,
            })
        })
        .collect()
}

/// An elementwise kernel body `f(x, scale, 1/scale, lo, hi)`, inlined into the loops.
pub(super) trait ElementFn: Fn(f32, f32, f32, f32, f32) -> f32 + Copy + Send + Sync {}

impl<F: Fn(f32, f32, f32, f32, f32) -> f32 + Copy + Send + Sync> ElementFn for F {}
