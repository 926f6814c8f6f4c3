//! The Flex (CPU) implementations of [`FakeQuantKernels`]: one memory pass per kernel, loops
//! shaped so the compiler vectorises them, large tensors split across rayon's threads.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, SCALE_FLOOR, StepRule,
    lsq_fake_quant_then_round_bias, observe_fake_quant_then_round_bias, observe_then_fake_quant,
};
use rayon::prelude::*;

use super::runs::{Run, Runs, split_min};

/// Independent accumulators for reductions over one parameter's run: a single accumulator is a
/// dependency chain the compiler may not reorder (float addition is not associative).
const LANES: usize = 16;

/// Round half to even for `|v| < 2^22` without a libm call: adding and subtracting `1.5 · 2^23`
/// leaves no fractional bits, and IEEE round-to-nearest-even does the rest. Callers clamp first.
#[inline(always)]
fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// The code offset from the zero point, `clamp(round(x / s), lo, hi)` (= `q - zp`), and 1 where
/// `round(x / s)` lies on the grid, else 0. One rounding serves both: clamping to one code beyond
/// the grid first keeps the rounding exact and tells inside from outside.
#[inline(always)]
fn code_and_mask(x: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32) {
    let c = round_half_even(clamp(x * inv, lo - 1.0, hi + 1.0));
    let code = clamp(c, lo, hi);
    (code, (c == code) as u8 as f32)
}

/// The code offset alone, `round(clamp(x / s, lo, hi))`: with integer bounds this equals
/// [`code_and_mask`]'s code (rounding is monotone and fixes integers) at one clamp instead of two.
#[inline(always)]
fn code(x: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    round_half_even(clamp(x * inv, lo, hi))
}

/// `v` clamped to `[lo, hi]` by plain comparisons, which compile to one vector min and max
/// (`f32::clamp` also orders NaNs, which costs a compare and blend per bound). NaN stays NaN.
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// `∂x̂/∂s` of one element: `(q - zp) - x/s` inside the grid, `(q - zp)` outside.
#[inline(always)]
fn scale_coef(x: f32, code: f32, mask: f32, inv: f32) -> f32 {
    code - x * inv * mask
}

/// A tensor's values as a contiguous `f32` slice owner (copied only when not contiguous).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

fn f32s(t: &FlexTensor) -> Vec<f32> {
    t.to_contiguous()
        .as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors")
        .to_vec()
}

fn flat(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    FlexTensor::from_data(TensorData::new(values, [n]))
}

/// What a [`Part`] computes over its runs.
#[derive(Clone, Copy)]
enum Kernel<'a, F> {
    /// `out = f(x, …)` elementwise into fresh memory ([`Grid::map_runs`]).
    Map(&'a Grid, F),
    /// The backward pass in place over `out`, with the scale gradient when asked ([`Grid::backward_runs`]).
    Backward(&'a Grid, bool),
    /// Per-parameter `(min, max)`, or `max |x|` when asked ([`range_runs`]); no `out`.
    Range { num_params: usize, abs: bool },
}

/// A kernel's per-element output: values to update in place, or fresh memory to fill (so a
/// megabyte-sized output is not zeroed first only to be overwritten).
enum Out<'a> {
    Update(&'a mut [f32]),
    Fill(&'a mut [MaybeUninit<f32>]),
    Nothing,
}

impl<'a> Out<'a> {
    /// The output of elements `..mid` and `mid..`.
    fn split_at(self, mid: usize) -> (Out<'a>, Out<'a>) {
        match self {
            Out::Update(o) => {
                let (a, b) = o.split_at_mut(mid);
                (Out::Update(a), Out::Update(b))
            }
            Out::Fill(o) => {
                let (a, b) = o.split_at_mut(mid);
                (Out::Fill(a), Out::Fill(b))
            }
            Out::Nothing => (Out::Nothing, Out::Nothing),
        }
    }
}

/// One kernel over some runs of the view, whose output slice starts at element `offset`.
struct Part<'a, F> {
    kernel: Kernel<'a, F>,
    runs: &'a [Run],
    xs: &'a [f32],
    out: Out<'a>,
    offset: usize,
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
type NoElementFn = fn(f32, f32, f32, f32, f32) -> f32;

/// Runs `kernel` over the whole view, or over contiguous parts of it on rayon workers when it is
/// large (see [`split_min`]); `out` (indexed by element) is cut with it. Returns each part's
/// output, lowest elements first.
fn split_work<F: ElementFn>(
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
trait ElementFn: Fn(f32, f32, f32, f32, f32) -> f32 + Copy + Send + Sync {}
impl<F: Fn(f32, f32, f32, f32, f32) -> f32 + Copy + Send + Sync> ElementFn for F {}

/// Per-parameter constants of the grid: `scale`, `1/scale`, and the code range `[qmin - zp, qmax - zp]`.
struct Grid {
    scale: Vec<f32>,
    inv: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
    /// The code range when every parameter has the same one (any symmetric grid): loops over
    /// per-parameter runs then read two constants instead of two more arrays (about 30% faster).
    uniform: Option<(f32, f32)>,
}

impl Grid {
    /// Grid constants from flat scales and raw zero points (rounded and clamped here).
    fn new(scale: &FlexTensor, zero_point: &FlexTensor, qmin: f32, qmax: f32) -> Self {
        let scale: Vec<f32> = f32s(scale)
            .into_iter()
            .map(|s| s.max(SCALE_FLOOR))
            .collect();
        let zps: Vec<f32> = f32s(zero_point)
            .iter()
            .map(|z| z.round_ties_even().clamp(qmin, qmax))
            .collect();
        let uniform = zps
            .iter()
            .all(|&z| z == zps[0])
            .then(|| (qmin - zps[0], qmax - zps[0]));
        Grid {
            inv: scale.iter().map(|s| 1.0 / s).collect(),
            lo: zps.iter().map(|z| qmin - z).collect(),
            hi: zps.iter().map(|z| qmax - z).collect(),
            scale,
            uniform,
        }
    }

    /// `f(x, scale, 1/scale, lo, hi)` for every element of the view.
    fn map(&self, runs: &Runs, xs: &[f32], f: impl ElementFn) -> Vec<f32> {
        let n = xs.len();
        let mut out = Vec::with_capacity(n);
        split_work(
            runs,
            xs,
            Out::Fill(&mut out.spare_capacity_mut()[..n]),
            Kernel::Map(self, f),
        );
        // SAFETY: the runs cover every element of the view exactly once (`Runs::list`), and
        // `map_runs` writes each element of its runs, so all `n` values are initialised.
        unsafe { out.set_len(n) };
        out
    }

    /// Writes `f(x, scale, 1/scale, lo, hi)` for the elements of `runs` into `out` (whose first
    /// element is element `offset`), with per-parameter constants hoisted (stride 0) or zipped
    /// (stride 1) so the loops vectorise.
    #[inline(always)]
    fn map_runs(
        &self,
        runs: &[Run],
        xs: &[f32],
        out: &mut [MaybeUninit<f32>],
        offset: usize,
        f: impl ElementFn,
    ) {
        for &(start, len, p0, stride) in runs {
            let x = &xs[start..start + len];
            let o = &mut out[start - offset..start - offset + len];
            if stride == 0 {
                let (s, inv, lo, hi) = (self.scale[p0], self.inv[p0], self.lo[p0], self.hi[p0]);
                for (o, &x) in o.iter_mut().zip(x) {
                    o.write(f(x, s, inv, lo, hi));
                }
            } else if let Some((lo, hi)) = self.uniform {
                let params = self.scale[p0..p0 + len].iter().zip(&self.inv[p0..p0 + len]);
                for ((o, &x), (&s, &inv)) in o.iter_mut().zip(x).zip(params) {
                    o.write(f(x, s, inv, lo, hi));
                }
            } else {
                let params = self.scale[p0..p0 + len]
                    .iter()
                    .zip(&self.inv[p0..p0 + len])
                    .zip(self.lo[p0..p0 + len].iter().zip(&self.hi[p0..p0 + len]));
                for ((o, &x), ((&s, &inv), (&lo, &hi))) in o.iter_mut().zip(x).zip(params) {
                    o.write(f(x, s, inv, lo, hi));
                }
            }
        }
    }

    /// The backward pass over `runs`, in place: `grad` (whose first element is element `offset`)
    /// becomes `dx = grad · mask`. With `ds`, also accumulates `Σ grad · ∂x̂/∂s` per parameter.
    #[inline(always)]
    fn backward_runs(
        &self,
        runs: &[Run],
        xs: &[f32],
        grad: &mut [f32],
        offset: usize,
        mut ds: Option<&mut [f32]>,
    ) {
        for &(start, len, p0, stride) in runs {
            let x = &xs[start..start + len];
            let g = &mut grad[start - offset..start - offset + len];
            match (stride, ds.as_deref_mut()) {
                (0, None) => {
                    let (inv, lo, hi) = (self.inv[p0], self.lo[p0], self.hi[p0]);
                    for (g, &x) in g.iter_mut().zip(x) {
                        *g *= code_and_mask(x, inv, lo, hi).1;
                    }
                }
                (0, Some(ds)) => {
                    let (inv, lo, hi) = (self.inv[p0], self.lo[p0], self.hi[p0]);
                    let mut lanes = [0f32; LANES];
                    let mut g_chunks = g.chunks_exact_mut(LANES);
                    let mut x_chunks = x.chunks_exact(LANES);
                    for (gc, xc) in (&mut g_chunks).zip(&mut x_chunks) {
                        for k in 0..LANES {
                            let (code, mask) = code_and_mask(xc[k], inv, lo, hi);
                            lanes[k] += gc[k] * scale_coef(xc[k], code, mask, inv);
                            gc[k] *= mask;
                        }
                    }
                    let mut tail = 0f32;
                    for (g, &x) in g_chunks
                        .into_remainder()
                        .iter_mut()
                        .zip(x_chunks.remainder())
                    {
                        let (code, mask) = code_and_mask(x, inv, lo, hi);
                        tail += *g * scale_coef(x, code, mask, inv);
                        *g *= mask;
                    }
                    ds[p0] += lanes.iter().sum::<f32>() + tail;
                }
                (_, ds) => {
                    let (inv, ds) = (&self.inv[p0..p0 + len], ds.map(|ds| &mut ds[p0..p0 + len]));
                    match self.uniform {
                        Some((lo, hi)) => backward_uniform(g, x, inv, (lo, hi), ds),
                        None => {
                            let bounds = self.lo[p0..p0 + len].iter().copied();
                            let bounds = bounds.zip(self.hi[p0..p0 + len].iter().copied());
                            backward_zipped(g, x, inv, bounds, ds)
                        }
                    }
                }
            }
        }
    }
}

/// [`backward_zipped`] when every parameter has the code range `(lo, hi)`: two constants instead
/// of two more streams (an iterator repeating them measured 10% slower than this loop).
#[inline(always)]
fn backward_uniform(
    g: &mut [f32],
    x: &[f32],
    inv: &[f32],
    (lo, hi): (f32, f32),
    ds: Option<&mut [f32]>,
) {
    match ds {
        None => {
            for ((g, &x), &inv) in g.iter_mut().zip(x).zip(inv) {
                *g *= code_and_mask(x, inv, lo, hi).1;
            }
        }
        Some(ds) => {
            for (((g, &x), acc), &inv) in g.iter_mut().zip(x).zip(ds).zip(inv) {
                let (code, mask) = code_and_mask(x, inv, lo, hi);
                *acc += *g * scale_coef(x, code, mask, inv);
                *g *= mask;
            }
        }
    }
}

/// The backward pass over one run with a parameter per element (`inv` and `bounds` zipped with
/// the elements), in place over `g`; with `ds`, accumulates `g · ∂x̂/∂s` into it elementwise.
#[inline(always)]
fn backward_zipped(
    g: &mut [f32],
    x: &[f32],
    inv: &[f32],
    bounds: impl Iterator<Item = (f32, f32)>,
    ds: Option<&mut [f32]>,
) {
    let params = inv.iter().zip(bounds);
    match ds {
        None => {
            for ((g, &x), (&inv, (lo, hi))) in g.iter_mut().zip(x).zip(params) {
                *g *= code_and_mask(x, inv, lo, hi).1;
            }
        }
        Some(ds) => {
            for (((g, &x), acc), (&inv, (lo, hi))) in g.iter_mut().zip(x).zip(ds).zip(params) {
                let (code, mask) = code_and_mask(x, inv, lo, hi);
                *acc += *g * scale_coef(x, code, mask, inv);
                *g *= mask;
            }
        }
    }
}

/// Per-parameter `(min, max)` (or, with `abs`, `max |x|` in both) over `runs`.
#[inline(always)]
fn range_runs(runs: &[Run], xs: &[f32], num_params: usize, abs: bool) -> (Vec<f32>, Vec<f32>) {
    // `a > b` comparisons compile to vector min/max; NaNs never win.
    #[inline(always)]
    fn bigger(a: f32, b: f32) -> f32 {
        if b > a { b } else { a }
    }
    #[inline(always)]
    fn smaller(a: f32, b: f32) -> f32 {
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
fn range_per_param(
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

/// LSQ+'s zero-point gradient `grad_factor · Σ grad · ∂x̂/∂zp` per parameter, where
/// `∂x̂/∂zp = -s` outside the grid and 0 inside (a plain pass: LSQ+ is the rare case).
fn zero_point_grad(
    grid: &Grid,
    runs: &Runs,
    xs: &[f32],
    grad: &[f32],
    grad_factor: f32,
) -> Vec<f32> {
    let mut dzp = vec![0f64; grid.scale.len()];
    for (start, len, param_start, param_stride) in runs.list() {
        for k in 0..len {
            let (e, p) = (start + k, param_start + k * param_stride);
            let (_, mask) = code_and_mask(xs[e], grid.inv[p], grid.lo[p], grid.hi[p]);
            dzp[p] += (grad[e] * -grid.scale[p] * (1.0 - mask)) as f64;
        }
    }
    dzp.into_iter().map(|v| v as f32 * grad_factor).collect()
}

/// Mask bytes per rayon task when packing or applying a bit mask (8 elements per byte).
const MASK_CHUNK: usize = 1 << 12;

/// A 0/1 mask packed 8 elements to a byte, element `8i + k` in bit `k` of byte `i`: the clip
/// mask a fixed-scale fake quant keeps for its backward pass, 1/32 of its float input.
fn pack_bits(mask: &[f32]) -> Vec<u8> {
    let mut bits = vec![0u8; mask.len().div_ceil(8)];
    bits.par_chunks_mut(MASK_CHUNK)
        .zip(mask.par_chunks(8 * MASK_CHUNK))
        .for_each(|(bits, mask)| {
            for (byte, m) in bits.iter_mut().zip(mask.chunks(8)) {
                *byte = m
                    .iter()
                    .enumerate()
                    .fold(0u8, |acc, (k, &v)| acc | (((v != 0.0) as u8) << k));
            }
        });
    bits
}

/// The incoming gradient as the buffer `dx` is written over (`n` elements from offset 0): no
/// allocation when autodiff hands over a whole contiguous tensor, a contiguous copy otherwise.
fn writable(grad: FlexTensor, n: usize) -> FlexTensor {
    let whole = grad.is_contiguous() && grad.layout().contiguous_offsets() == Some((0, n));
    if whole { grad } else { grad.to_contiguous() }
}

/// The scale a kernel applies: `scale + offset` with an offset (a learned scale's anchor; a few
/// values, added on the host), else `scale`.
fn offset_scale(scale: FlexTensor, offset: FlexTensor, with_offset: bool) -> FlexTensor {
    if !with_offset {
        return scale;
    }
    let offset = f32s(&offset);
    flat(
        f32s(&scale)
            .iter()
            .zip(offset)
            .map(|(s, o)| s + o)
            .collect(),
    )
}

/// The scale and zero point a kernel applies: [`offset_scale`] and [`range_zero_point`].
fn applied_grid(
    (scale, offset, with_offset): (FlexTensor, FlexTensor, bool),
    (zero_point, high, from_range): (FlexTensor, FlexTensor, bool),
    (qmin, qmax): (f32, f32),
) -> (FlexTensor, FlexTensor) {
    (
        offset_scale(scale, offset, with_offset),
        range_zero_point(zero_point, high, from_range, qmin, qmax),
    )
}

/// The zero point a kernel applies: `zero_point`, or with `from_range` that of the range
/// `(zero_point, high)` (minima and maxima) on the grid `qmin..=qmax`, as the observer computes
/// it (a few values per quantizer, on the host).
fn range_zero_point(
    zero_point: FlexTensor,
    high: FlexTensor,
    from_range: bool,
    qmin: f32,
    qmax: f32,
) -> FlexTensor {
    if !from_range {
        return zero_point;
    }
    let rule = ObserveRule::from_args(false, 0.0, qmin, qmax, 0.0, SCALE_FLOOR);
    let zero_points = f32s(&zero_point)
        .iter()
        .zip(f32s(&high))
        .map(|(&low, high)| rule.apply(low, high, low, high)[3])
        .collect();
    flat(zero_points)
}

/// What an elementwise kernel over a view starts from: `x` contiguous, the grid constants and
/// the view's runs.
fn prepare(
    x: FlexTensor,
    scale: &FlexTensor,
    zero_point: &FlexTensor,
    (qmin, qmax): (f32, f32),
    view: [usize; 4],
    per_group: bool,
) -> (FlexTensor, Grid, Runs) {
    let x = contiguous(x);
    assert!(
        x.as_slice::<f32>().is_some(),
        "fused fake-quant takes f32 tensors"
    );
    let grid = Grid::new(scale, zero_point, qmin, qmax);
    let runs = Runs {
        view,
        per_group,
        num_params: grid.scale.len(),
    };
    (x, grid, runs)
}

impl FakeQuantKernels for Flex {
    fn max_abs_per_param(
        x: FlexTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> FlexTensor {
        flat(range_per_param(x, view, per_group, num_params, true).1)
    }

    fn min_max_per_param(
        x: FlexTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (FlexTensor, FlexTensor) {
        let (min, max) = range_per_param(x, view, per_group, num_params, false);
        (flat(min), flat(max))
    }

    fn observe_range(
        x: FlexTensor,
        min: FlexTensor,
        max: FlexTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
    ) -> Observed<Self> {
        // The running range matters to running extremes and moving averages, not to a rule
        // that keeps the batch's range alone.
        let (old_min, old_max) = if averaging < 1.0 {
            (f32s(&min), f32s(&max))
        } else {
            (vec![f32::INFINITY; n], vec![f32::NEG_INFINITY; n])
        };
        let (batch_min, batch_max) = range_per_param(x, view, per_group, n, symmetric);
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        let mut out = [(); 4].map(|_| vec![0f32; n]);
        for p in 0..n {
            // A symmetric range is `max |x|` alone (no minima are computed).
            let batch_low = if symmetric { 0.0 } else { batch_min[p] };
            let values = rule.apply(batch_low, batch_max[p], old_min[p], old_max[p]);
            for (column, v) in out.iter_mut().zip(values) {
                column[p] = v;
            }
        }
        let [min, max, scale, zero_point] = out.map(flat);
        ((min, max), (scale, zero_point))
    }

    fn observe_fake_quant(
        x: FlexTensor,
        min: FlexTensor,
        max: FlexTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        symmetric: bool,
        averaging: f32,
        qmin: f32,
        qmax: f32,
        symmetric_zero_point: f32,
        eps: f32,
        keep_mask: bool,
    ) -> (Range<Self>, (FlexTensor, FlexTensor)) {
        // On the CPU the two kernels cost what one would: no launches to save.
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        observe_then_fake_quant::<Self>(x, (min, max), view, per_group, n, rule, keep_mask)
    }

    fn observe_fake_quant_bias(
        x: FlexTensor,
        min: FlexTensor,
        max: FlexTensor,
        bias: FlexTensor,
        input_low: FlexTensor,
        input_high: FlexTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        rule: ObserveRule,
        input_rule: StepRule,
        limit: f32,
    ) -> (Range<Self>, (FlexTensor, FlexTensor)) {
        // On the CPU one kernel would cost what the two do: no launches to save.
        observe_fake_quant_then_round_bias::<Self>(
            x,
            (min, max),
            bias,
            (input_low, input_high),
            (view, per_group, n),
            rule,
            input_rule,
            limit,
        )
    }

    fn fake_quant_backward(
        grad: FlexTensor,
        x: FlexTensor,
        scale: FlexTensor,
        scale_offset: FlexTensor,
        zero_point: FlexTensor,
        zero_point_high: FlexTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
        with_zero_point_grad: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> ((FlexTensor, FlexTensor), FlexTensor) {
        let (scale, zero_point) = applied_grid(
            (scale, scale_offset, with_offset),
            (zero_point, zero_point_high, zero_point_from_range),
            (qmin, qmax),
        );
        let x = contiguous(x);
        let xs = x.as_slice::<f32>().expect("f32 input");
        let n = xs.len();
        let grid = Grid::new(&scale, &zero_point, qmin, qmax);
        let num_params = grid.scale.len();
        let runs = Runs {
            view,
            per_group,
            num_params,
        };
        // LSQ+'s zero-point gradient first (the pass below overwrites `grad` with `dx`).
        let dzp = if with_zero_point_grad {
            zero_point_grad(&grid, &runs, xs, &f32s(&grad), grad_factor)
        } else {
            Vec::new()
        };
        let mut dx = writable(grad, n);
        let kernel = Kernel::<'_, NoElementFn>::Backward(&grid, with_scale_grad);
        let parts = split_work(&runs, xs, Out::Update(dx.storage_mut::<f32>()), kernel);
        let mut ds = vec![0f32; if with_scale_grad { num_params } else { 0 }];
        for (part, _) in parts {
            for (acc, v) in ds.iter_mut().zip(part) {
                *acc += v;
            }
        }
        // No gradient where the scale sits below the floor it is clamped to.
        if with_scale_grad {
            for (acc, raw) in ds.iter_mut().zip(f32s(&scale)) {
                *acc = if raw < SCALE_FLOOR {
                    0.0
                } else {
                    *acc * grad_factor
                };
            }
        }
        ((dx.reshape(Shape::new(view)), flat(ds)), flat(dzp))
    }

    fn fake_quant_with_mask(
        x: FlexTensor,
        scale: FlexTensor,
        zero_point: FlexTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (FlexTensor, FlexTensor) {
        let (x, grid, runs) = prepare(x, &scale, &zero_point, (qmin, qmax), view, per_group);
        let xs = x.as_slice::<f32>().expect("contiguous f32");
        let dq = grid.map(&runs, xs, |x, s, inv, lo, hi| code(x, inv, lo, hi) * s);
        // The mask pass reads `x` again and writes a float per element, then packs 8 to a byte:
        // cheap passes instead of a second output type through every kernel.
        let mask = grid.map(&runs, xs, |x, _, inv, lo, hi| {
            code_and_mask(x, inv, lo, hi).1
        });
        let bits = pack_bits(&mask);
        let n = bits.len();
        (
            FlexTensor::from_data(TensorData::new(dq, Shape::new(view))),
            FlexTensor::from_data(TensorData::new(bits, [n])),
        )
    }

    fn apply_mask(grad: FlexTensor, mask: FlexTensor) -> FlexTensor {
        let shape = grad.layout().shape().clone();
        let n = shape.num_elements();
        let bits = mask.as_slice::<u8>().expect("a bit mask");
        let mut dx = writable(grad, n);
        dx.storage_mut::<f32>()
            .par_chunks_mut(8 * MASK_CHUNK)
            .zip(bits.par_chunks(MASK_CHUNK))
            .for_each(|(g, bits)| {
                for (g, &byte) in g.chunks_mut(8).zip(bits) {
                    for (k, g) in g.iter_mut().enumerate() {
                        *g *= ((byte >> k) & 1) as f32;
                    }
                }
            });
        dx.reshape(shape)
    }

    fn round_to_step_product(
        x: FlexTensor,
        a_low: FlexTensor,
        a_high: FlexTensor,
        b_low: FlexTensor,
        b_high: FlexTensor,
        a_rule: StepRule,
        b_rule: StepRule,
        limit: f32,
    ) -> FlexTensor {
        let [a_low, a_high, b_low, b_high] = [a_low, a_high, b_low, b_high].map(|t| f32s(&t));
        // One step per element, or one for all (`e % 1`).
        let step = |e: usize| {
            a_rule.step(a_low[e % a_low.len()], a_high[e % a_high.len()])
                * b_rule.step(b_low[e % b_low.len()], b_high[e % b_high.len()])
        };
        let rounded = f32s(&x)
            .into_iter()
            .enumerate()
            .map(|(e, v)| {
                let s = step(e);
                (v / s).round_ties_even().clamp(-limit, limit) * s
            })
            .collect();
        flat(rounded)
    }

    fn lsq_fake_quant_bias(
        x: FlexTensor,
        scale: FlexTensor,
        scale_offset: FlexTensor,
        zero_point: FlexTensor,
        zero_point_high: FlexTensor,
        bias: FlexTensor,
        input_low: FlexTensor,
        input_high: FlexTensor,
        grid: LsqBiasGrid,
    ) -> (FlexTensor, FlexTensor) {
        // On the CPU one kernel would cost what the two do: no launches to save.
        lsq_fake_quant_then_round_bias::<Self>(
            x,
            (scale, scale_offset),
            (zero_point, zero_point_high),
            bias,
            (input_low, input_high),
            grid,
        )
    }

    fn lsq_fake_quant(
        x: FlexTensor,
        scale: FlexTensor,
        scale_offset: FlexTensor,
        zero_point: FlexTensor,
        zero_point_high: FlexTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        _clip_free: bool,
        _grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FlexTensor {
        let (scale, zero_point) = applied_grid(
            (scale, scale_offset, with_offset),
            (zero_point, zero_point_high, zero_point_from_range),
            (qmin, qmax),
        );
        let (x, grid, runs) = prepare(x, &scale, &zero_point, (qmin, qmax), view, per_group);
        let xs = x.as_slice::<f32>().expect("contiguous f32");
        // dq = (q - zp) · s
        let dq = grid.map(&runs, xs, |x, s, inv, lo, hi| code(x, inv, lo, hi) * s);
        FlexTensor::from_data(TensorData::new(dq, Shape::new(view)))
    }

    // On the CPU picking the rows' parameters and adding their gradients back costs a few
    // hundred scalar copies: no launches to save, so the rows reuse the kernels above.
    fn lsq_fake_quant_rows(
        x: FlexTensor,
        scale: FlexTensor,
        scale_offset: FlexTensor,
        zero_point: FlexTensor,
        zero_point_high: FlexTensor,
        rows: FlexTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> FlexTensor {
        let rows = row_indices(rows);
        let pick = |t: &FlexTensor| pick_rows(t, &rows);
        Self::lsq_fake_quant(
            x,
            pick(&scale),
            pick(&scale_offset),
            pick(&zero_point),
            pick(&zero_point_high),
            qmin,
            qmax,
            view,
            false,
            false,
            grad_factor,
            with_offset,
            zero_point_from_range,
        )
    }

    fn lsq_backward_rows(
        grad: FlexTensor,
        x: FlexTensor,
        scale: FlexTensor,
        scale_offset: FlexTensor,
        zero_point: FlexTensor,
        zero_point_high: FlexTensor,
        rows: FlexTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> (FlexTensor, FlexTensor) {
        let rows = row_indices(rows);
        let pick = |t: &FlexTensor| pick_rows(t, &rows);
        let ((dx, ds), _) = Self::fake_quant_backward(
            grad,
            x,
            pick(&scale),
            pick(&scale_offset),
            pick(&zero_point),
            pick(&zero_point_high),
            qmin,
            qmax,
            view,
            false,
            true,
            false,
            grad_factor,
            with_offset,
            zero_point_from_range,
        );
        // Each table row's gradient is the sum over its lookups, in lookup order.
        let mut table = vec![0f32; scale.layout().shape().num_elements()];
        for (&row, d) in rows.iter().zip(f32s(&ds)) {
            table[row] += d;
        }
        (dx, flat(table))
    }
}

/// The row indices of an embedding lookup, whatever integer type they came in.
fn row_indices(rows: FlexTensor) -> Vec<usize> {
    rows.into_data()
        .iter::<i64>()
        .map(|r| usize::try_from(r).expect("a looked-up row is not negative"))
        .collect()
}

/// The values of a per-row parameter (`[table rows]`) at the looked-up rows, read in place (the
/// table's parameters are not copied whole: 30,522 rows for BERT's word table).
fn pick_rows(t: &FlexTensor, rows: &[usize]) -> FlexTensor {
    let t = t.to_contiguous();
    let values = t
        .as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors");
    flat(rows.iter().map(|&r| values[r]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packing and applying the bit mask over several rayon chunks and a ragged tail: every
    /// gradient element is kept or zeroed exactly as its mask element says.
    #[test]
    fn bit_mask_round_trips_over_chunks_and_a_ragged_tail() {
        let n = 8 * MASK_CHUNK * 3 + 13;
        let mask: Vec<f32> = (0..n).map(|i| ((i * 7919) % 5 != 0) as u8 as f32).collect();
        let grad: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
        let bits = pack_bits(&mask);
        assert_eq!(bits.len(), n.div_ceil(8));
        let dx = Flex::apply_mask(
            FlexTensor::from_data(TensorData::new(grad.clone(), [n])),
            FlexTensor::from_data(TensorData::new(bits.clone(), [bits.len()])),
        );
        let dx = dx.into_data().try_into_vec::<f32>().unwrap();
        let expected: Vec<f32> = grad.iter().zip(&mask).map(|(g, m)| g * m).collect();
        assert_eq!(dx, expected);
    }
}
