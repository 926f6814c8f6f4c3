//! A view's per-parameter grid constants and the loops over them: the elementwise map and the
//! backward pass (with LSQ's scale gradient, and LSQ+'s zero-point gradient).

use std::mem::MaybeUninit;

use burn::backend::flex::FlexTensor;

use super::super::SCALE_FLOOR;
use super::super::runs::{Run, Runs};
use super::element::{LANES, code_and_inside, code_and_mask, scale_coef};
use super::parts::{ElementFn, Kernel, NoElementFn, Out, split_work};
use super::tensors::f32s;

/// Per-parameter constants of the grid: `scale`, `1/scale`, and the code range `[qmin - zp, qmax - zp]`.
pub(super) struct Grid {
    pub(super) scale: Vec<f32>,
    pub(super) inv: Vec<f32>,
    pub(super) lo: Vec<f32>,
    pub(super) hi: Vec<f32>,
    /// The code range when every parameter has the same one (any symmetric grid): loops over
    /// per-parameter runs then read two constants instead of two more arrays (about 30% faster).
    pub(super) uniform: Option<(f32, f32)>,
}

impl Grid {
    /// Grid constants from flat scales and raw zero points (rounded and clamped here).
    pub(super) fn new(scale: &FlexTensor, zero_point: &FlexTensor, qmin: f32, qmax: f32) -> Self {
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
    pub(super) fn map(&self, runs: &Runs, xs: &[f32], f: impl ElementFn) -> Vec<f32> {
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
    pub(super) fn map_runs(
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

    /// The fake quantization `code · scale` of every element of the view and, in the same pass,
    /// its clip mask packed 8 elements to a byte (element `8i + k` in bit `k` of byte `i`), 1
    /// where the element lies on the grid: what the clipped straight-through backward reads.
    pub(super) fn map_masked(&self, runs: &Runs, xs: &[f32]) -> (Vec<f32>, Vec<u8>) {
        let n = xs.len();
        let mut out = Vec::with_capacity(n);
        let mut bits = vec![0u8; n.div_ceil(8)];
        split_work(
            runs,
            xs,
            Out::FillMasked(&mut out.spare_capacity_mut()[..n], &mut bits),
            Kernel::<NoElementFn>::MapMasked(self),
        );
        // SAFETY: as in `map`, the runs cover every element exactly once and `map_masked_runs`
        // writes each element of its runs.
        unsafe { out.set_len(n) };
        (out, bits)
    }

    /// [`Self::map_masked`] over `runs`, into `out` and `bits` (zeroed; whose first element and
    /// bit are element `offset`, a multiple of 8).
    #[inline(always)]
    pub(super) fn map_masked_runs(
        &self,
        runs: &[Run],
        xs: &[f32],
        out: &mut [MaybeUninit<f32>],
        bits: &mut [u8],
        offset: usize,
    ) {
        for &(start, len, p0, stride) in runs {
            let x = &xs[start..start + len];
            let first = start - offset;
            let o = &mut out[first..first + len];
            if stride == 0 {
                let c = (self.scale[p0], self.inv[p0], self.lo[p0], self.hi[p0]);
                masked_run(x, o, bits, first, |_| c);
            } else {
                let (s, inv) = (&self.scale[p0..p0 + len], &self.inv[p0..p0 + len]);
                match self.uniform {
                    Some((lo, hi)) => masked_run(x, o, bits, first, |k| (s[k], inv[k], lo, hi)),
                    None => {
                        let (lo, hi) = (&self.lo[p0..p0 + len], &self.hi[p0..p0 + len]);
                        masked_run(x, o, bits, first, |k| (s[k], inv[k], lo[k], hi[k]))
                    }
                }
            }
        }
    }

    /// The backward pass over `runs`, in place: `grad` (whose first element is element `offset`)
    /// becomes `dx = grad · mask`. With `ds`, also accumulates `Σ grad · ∂x̂/∂s` per parameter.
    #[inline(always)]
    pub(super) fn backward_runs(
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

/// Elements per block of [`masked_run`]: their mask bits make two whole bytes, their values
/// one AVX-512 vector or two AVX2 ones.
const MASK_BLOCK: usize = 16;

/// One run of [`Grid::map_masked_runs`]: `x` fake-quantized into `out` with `param(k) = (scale,
/// 1/scale, lo, hi)` of its element `k`, and the mask bit of element `k` set in `bits` at bit
/// `first + k`. Whole aligned blocks of [`MASK_BLOCK`] elements write their two mask bytes at
/// once (the loop the compiler vectorises); the elements before and after them, which may
/// share a byte with a neighbouring run, set their bits one at a time.
#[inline(always)]
fn masked_run(
    x: &[f32],
    out: &mut [MaybeUninit<f32>],
    bits: &mut [u8],
    first: usize,
    param: impl Fn(usize) -> (f32, f32, f32, f32),
) {
    let len = x.len();
    let one = |k: usize, out: &mut [MaybeUninit<f32>], bits: &mut [u8]| {
        let (s, inv, lo, hi) = param(k);
        let (code, inside) = code_and_inside(x[k], inv, lo, hi);
        out[k].write(code * s);
        let b = first + k;
        bits[b / 8] |= (inside as u8) << (b % 8);
    };
    let head = ((MASK_BLOCK - first % MASK_BLOCK) % MASK_BLOCK).min(len);
    for k in 0..head {
        one(k, out, bits);
    }
    let blocks = (len - head) / MASK_BLOCK;
    let body = head + blocks * MASK_BLOCK;
    let bytes = (first + head) / 8;
    let xs = x[head..body].chunks_exact(MASK_BLOCK);
    let outs = out[head..body].chunks_exact_mut(MASK_BLOCK);
    let words = bits[bytes..bytes + 2 * blocks].chunks_exact_mut(2);
    for (b, ((xc, oc), word)) in xs.zip(outs).zip(words).enumerate() {
        let k0 = head + b * MASK_BLOCK;
        let mut mask = 0u16;
        for j in 0..MASK_BLOCK {
            let (s, inv, lo, hi) = param(k0 + j);
            let (code, inside) = code_and_inside(xc[j], inv, lo, hi);
            oc[j].write(code * s);
            mask |= (inside as u16) << j;
        }
        word.copy_from_slice(&mask.to_le_bytes());
    }
    for k in body..len {
        one(k, out, bits);
    }
}

/// [`backward_zipped`] when every parameter has the code range `(lo, hi)`: two constants instead
/// of two more streams (an iterator repeating them measured 10% slower than this loop).
#[inline(always)]
pub(super) fn backward_uniform(
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
pub(super) fn backward_zipped(
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

/// LSQ+'s zero-point gradient `grad_factor · Σ grad · ∂x̂/∂zp` per parameter, where
/// `∂x̂/∂zp = -s` outside the grid and 0 inside (a plain pass: LSQ+ is the rare case).
pub(super) fn zero_point_grad(
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
