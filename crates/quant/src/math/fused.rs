//! Fused fake-quantization kernels for the Flex (CPU) backend, as a Burn backend extension.
//!
//! Composite ops cost one memory pass each (about 15 for a clipped fake-quant); one fused pass
//! computes the dequantized values and the gradient coefficients as *constants*. The gradient
//! stays with autodiff through exact-zero tracked terms:
//! `x̂ = dq + (x - x_c) · mask + (s - s_c) · A + (zp - zp_c) · B`, where `_c` are the same values
//! cut from the graph, so the forward value is exactly `dq` and the gradients are
//! `∂x̂/∂x = mask`, `∂x̂/∂s = A`, `∂x̂/∂zp = B` (see [`crate::fake_quantize_learnable`]).
//! Other devices (wgpu, CUDA, …) use the composite ops, which burn-fusion already fuses there.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Device, Shape, Slice, Tensor, TensorData};

/// How the elements of a `[outer, groups, group_len, inner]` view map to flat parameters.
#[derive(Debug, Clone, Copy)]
struct Runs {
    view: [usize; 4],
    per_group: bool,
    num_params: usize,
}

/// A run of elements: `(start, len, param_start, param_stride)`.
type Run = (usize, usize, usize, usize);

/// Below this many elements a kernel stays on one thread (spawning costs more than it saves).
const PARALLEL_MIN: usize = 1 << 15;

/// Splits `runs` at element `mid` (cutting the run that straddles it), for two threads.
fn split_runs(runs: &[Run], mid: usize) -> (Vec<Run>, Vec<Run>) {
    let (mut low, mut high) = (Vec::new(), Vec::new());
    for &(start, len, p0, stride) in runs {
        if start + len <= mid {
            low.push((start, len, p0, stride));
        } else if start >= mid {
            high.push((start, len, p0, stride));
        } else {
            let k = mid - start;
            low.push((start, k, p0, stride));
            high.push((mid, len - k, p0 + k * stride, stride));
        }
    }
    (low, high)
}

impl Runs {
    /// All runs, in element order.
    fn list(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        self.for_each(|a, b, c, d| runs.push((a, b, c, d)));
        runs
    }

    /// Calls `f(start, len, param_start, param_stride)` for runs of elements whose parameter index
    /// is `param_start + k · param_stride` (stride 0 or 1).
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let [o, g, l, i] = self.view;
        let n: usize = self.view.iter().product();
        if self.num_params == 1 {
            f(0, n, 0, 0);
        } else if self.per_group {
            for oo in 0..o {
                for gg in 0..g {
                    for ll in 0..l {
                        f(((oo * g + gg) * l + ll) * i, i, (oo * g + gg) * i, 1);
                    }
                }
            }
        } else if l * i == 1 {
            for oo in 0..o {
                f(oo * g, g, 0, 1);
            }
        } else {
            for oo in 0..o {
                for gg in 0..g {
                    f((oo * g + gg) * l * i, l * i, gg, 0);
                }
            }
        }
    }
}

/// Fused fake-quant kernels; implemented for Flex, dispatched from `Tensor`s by [`fused_parts`].
#[backend_extension(Flex, Autodiff)]
pub trait FakeQuantKernels: Backend {
    /// Packs `[dq | mask | A | B]` (the first `parts` of them, each `numel` long) for `x` viewed as
    /// `[o, g, l, i]`, with flat `scale` and raw `zero_point` (rounded and clamped inside).
    #[allow(clippy::too_many_arguments)]
    fn fake_quant_parts(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        parts: usize,
    ) -> FloatTensor<Self>;

    /// Per-parameter `max |x|` of `x` viewed as `[o, g, l, i]` (one pass, no transposes).
    fn max_abs_per_param(
        x: FloatTensor<Self>,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        num_params: usize,
    ) -> FloatTensor<Self>;

    /// Backward of [`Self::lsq_fake_quant`] in one pass: packs `[dx | ds]` (`ds` only when
    /// `with_scale_grad`), recomputing the clip mask and `∂x̂/∂s` from `x`.
    #[allow(clippy::too_many_arguments)]
    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        with_scale_grad: bool,
    ) -> FloatTensor<Self>;

    /// LSQ fake quantization of a `[o, g, l, i]` view with a learned `scale` and a constant
    /// `zero_point`, differentiable in `x` (clipped STE) and `scale` (LSQ gradient), as one
    /// forward kernel and one backward kernel.
    #[allow(clippy::too_many_arguments)]
    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
    ) -> FloatTensor<Self>;
}

/// Round half to even for `|v| < 2^22` without a libm call: adding and subtracting `1.5 · 2^23`
/// leaves no fractional bits, and IEEE round-to-nearest-even does the rest. Callers clamp first.
#[inline(always)]
fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

fn f32s(t: &FlexTensor) -> Vec<f32> {
    let t = t.to_contiguous();
    t.as_slice::<f32>()
        .expect("fused fake-quant takes f32 tensors")
        .to_vec()
}

/// Per-parameter constants of the grid: `scale`, `1/scale`, and the code range `[qmin - zp, qmax - zp]`.
struct Grid {
    scale: Vec<f32>,
    inv: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Grid {
    /// Grid constants from flat scales and raw zero points (rounded and clamped here).
    fn new(scale: Vec<f32>, zero_point: &[f32], qmin: f32, qmax: f32) -> Self {
        let zps: Vec<f32> = zero_point
            .iter()
            .map(|z| z.round_ties_even().clamp(qmin, qmax))
            .collect();
        Grid {
            inv: scale.iter().map(|s| 1.0 / s).collect(),
            lo: zps.iter().map(|z| qmin - z).collect(),
            hi: zps.iter().map(|z| qmax - z).collect(),
            scale,
        }
    }

    /// Writes `f(x, scale, 1/scale, lo, hi)` for every element into `out`, run by run, with the
    /// per-parameter constants hoisted (stride 0) or zipped (stride 1) so the loops vectorise;
    /// large tensors are split across two threads.
    fn map(
        &self,
        runs: &Runs,
        xs: &[f32],
        out: &mut [f32],
        f: impl Fn(f32, f32, f32, f32, f32) -> f32 + Copy + Send + Sync,
    ) {
        let list = runs.list();
        if xs.len() < PARALLEL_MIN {
            return self.map_runs(&list, xs, out, 0, f);
        }
        let mid = xs.len() / 2;
        let (low, high) = split_runs(&list, mid);
        let (out_low, out_high) = out.split_at_mut(mid);
        std::thread::scope(|scope| {
            scope.spawn(|| self.map_runs(&high, &xs[mid..], out_high, mid, f));
            self.map_runs(&low, &xs[..mid], out_low, 0, f);
        });
    }

    /// [`Self::map`] on one thread over `runs`, whose element indices start at `offset` in `xs`/`out`.
    #[inline(always)]
    fn map_runs(
        &self,
        runs: &[Run],
        xs: &[f32],
        out: &mut [f32],
        offset: usize,
        f: impl Fn(f32, f32, f32, f32, f32) -> f32 + Copy,
    ) {
        for &(start, len, p0, stride) in runs {
            let start = start - offset;
            let (x, o) = (&xs[start..start + len], &mut out[start..start + len]);
            if stride == 0 {
                let (s, inv, lo, hi) = (self.scale[p0], self.inv[p0], self.lo[p0], self.hi[p0]);
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x, s, inv, lo, hi);
                }
            } else {
                let params = self.scale[p0..p0 + len]
                    .iter()
                    .zip(&self.inv[p0..p0 + len])
                    .zip(self.lo[p0..p0 + len].iter().zip(&self.hi[p0..p0 + len]));
                for ((o, &x), ((&s, &inv), (&lo, &hi))) in o.iter_mut().zip(x).zip(params) {
                    *o = f(x, s, inv, lo, hi);
                }
            }
        }
    }

    /// Backward over `runs` (element indices from `offset`): writes `dx` and, when `ds` is
    /// given, accumulates the per-parameter scale gradient into it.
    fn backward_runs(
        &self,
        runs: &[Run],
        gs: &[f32],
        xs: &[f32],
        dx: &mut [f32],
        offset: usize,
        mut ds: Option<&mut [f32]>,
    ) {
        // ∂x̂/∂s per element: (q - zp) - x/s inside the grid, (q - zp) outside.
        let coef = |x: f32, inv: f32, lo: f32, hi: f32| {
            code(x, inv, lo, hi) - x * inv * in_range(x, inv, lo, hi)
        };
        for &(start, len, p0, stride) in runs {
            let local = start - offset;
            let (gr, xr, dxr) = (
                &gs[local..local + len],
                &xs[local..local + len],
                &mut dx[local..local + len],
            );
            if stride == 0 {
                let (inv, lo, hi) = (self.inv[p0], self.lo[p0], self.hi[p0]);
                for ((d, &gv), &xv) in dxr.iter_mut().zip(gr).zip(xr) {
                    *d = gv * in_range(xv, inv, lo, hi);
                }
                if let Some(ds) = ds.as_deref_mut() {
                    ds[p0] += gr
                        .iter()
                        .zip(xr)
                        .map(|(&gv, &xv)| gv * coef(xv, inv, lo, hi))
                        .sum::<f32>();
                }
            } else {
                let params = || {
                    self.inv[p0..p0 + len]
                        .iter()
                        .zip(&self.lo[p0..p0 + len])
                        .zip(&self.hi[p0..p0 + len])
                };
                for (((d, &gv), &xv), ((&inv, &lo), &hi)) in
                    dxr.iter_mut().zip(gr).zip(xr).zip(params())
                {
                    *d = gv * in_range(xv, inv, lo, hi);
                }
                if let Some(ds) = ds.as_deref_mut() {
                    for (((acc, &gv), &xv), ((&inv, &lo), &hi)) in
                        ds[p0..p0 + len].iter_mut().zip(gr).zip(xr).zip(params())
                    {
                        *acc += gv * coef(xv, inv, lo, hi);
                    }
                }
            }
        }
    }
}

/// The code offset from the zero point, `clamp(round(x / s), lo, hi)` (= `q - zp`).
#[inline(always)]
fn code(x: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    round_half_even((x * inv).max(lo).min(hi))
}

/// 1 where `round(x / s)` lies on the grid, else 0 (clamping one code beyond keeps rounding exact).
#[inline(always)]
fn in_range(x: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    let c = round_half_even((x * inv).max(lo - 1.0).min(hi + 1.0));
    (c >= lo && c <= hi) as u8 as f32
}

impl FakeQuantKernels for Flex {
    fn fake_quant_parts(
        x: FlexTensor,
        scale: FlexTensor,
        zero_point: FlexTensor,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        parts: usize,
    ) -> FlexTensor {
        let x = if x.is_contiguous() {
            x
        } else {
            x.to_contiguous()
        };
        let xs = x
            .as_slice::<f32>()
            .expect("fused fake-quant takes f32 tensors");
        let grid = Grid::new(f32s(&scale), &f32s(&zero_point), qmin, qmax);
        let n = xs.len();
        let runs = Runs {
            view: [o, g, l, i],
            per_group,
            num_params: grid.scale.len(),
        };
        let mut out = vec![0f32; n * parts];
        let mut chunks = out.chunks_mut(n);
        // dq = (q - zp) · s
        grid.map(&runs, xs, chunks.next().unwrap(), |x, s, inv, lo, hi| {
            code(x, inv, lo, hi) * s
        });
        if let Some(mask) = chunks.next() {
            grid.map(&runs, xs, mask, |x, _, inv, lo, hi| {
                in_range(x, inv, lo, hi)
            });
        }
        // ∂x̂/∂s: (q - zp) - x/s inside the grid, (q - zp) outside.
        if let Some(coef_s) = chunks.next() {
            grid.map(&runs, xs, coef_s, |x, _, inv, lo, hi| {
                code(x, inv, lo, hi) - x * inv * in_range(x, inv, lo, hi)
            });
        }
        // ∂x̂/∂zp: 0 inside, -s outside.
        if let Some(coef_z) = chunks.next() {
            grid.map(&runs, xs, coef_z, |x, s, inv, lo, hi| {
                -s * (1.0 - in_range(x, inv, lo, hi))
            });
        }
        FlexTensor::from_data(TensorData::new(out, [n * parts]))
    }

    fn max_abs_per_param(
        x: FlexTensor,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        num_params: usize,
    ) -> FlexTensor {
        let x = if x.is_contiguous() {
            x
        } else {
            x.to_contiguous()
        };
        let xs = x
            .as_slice::<f32>()
            .expect("fused fake-quant takes f32 tensors");
        let mut acc = vec![0f32; num_params];
        let runs = Runs {
            view: [o, g, l, i],
            per_group,
            num_params,
        };
        runs.for_each(|start, len, p0, stride| {
            let run = &xs[start..start + len];
            if stride == 0 {
                acc[p0] = run.iter().fold(acc[p0], |m, v| m.max(v.abs()));
            } else {
                for (m, v) in acc[p0..p0 + len].iter_mut().zip(run) {
                    *m = m.max(v.abs());
                }
            }
        });
        FlexTensor::from_data(TensorData::new(acc, [num_params]))
    }

    fn fake_quant_backward(
        grad: FlexTensor,
        x: FlexTensor,
        scale: FlexTensor,
        zero_point: FlexTensor,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        with_scale_grad: bool,
    ) -> FlexTensor {
        let grad = if grad.is_contiguous() {
            grad
        } else {
            grad.to_contiguous()
        };
        let x = if x.is_contiguous() {
            x
        } else {
            x.to_contiguous()
        };
        let (gs, xs) = (
            grad.as_slice::<f32>().expect("f32 gradient"),
            x.as_slice::<f32>().expect("f32 input"),
        );
        let grid = Grid::new(f32s(&scale), &f32s(&zero_point), qmin, qmax);
        let n = xs.len();
        let num_params = grid.scale.len();
        let mut out = vec![0f32; n + if with_scale_grad { num_params } else { 0 }];
        let (dx, ds) = out.split_at_mut(n);
        let list = Runs {
            view: [o, g, l, i],
            per_group,
            num_params,
        }
        .list();
        let ds = with_scale_grad.then_some(ds);
        if n < PARALLEL_MIN {
            grid.backward_runs(&list, gs, xs, dx, 0, ds);
        } else {
            let mid = n / 2;
            let (low, high) = split_runs(&list, mid);
            let (dx_low, dx_high) = dx.split_at_mut(mid);
            let mut ds_high = vec![0f32; if with_scale_grad { num_params } else { 0 }];
            std::thread::scope(|scope| {
                let ds_high = with_scale_grad.then_some(ds_high.as_mut_slice());
                scope.spawn(|| {
                    grid.backward_runs(&high, &gs[mid..], &xs[mid..], dx_high, mid, ds_high)
                });
                grid.backward_runs(&low, &gs[..mid], &xs[..mid], dx_low, 0, ds);
            });
            for (acc, part) in out[n..].iter_mut().zip(&ds_high) {
                *acc += part;
            }
        }
        FlexTensor::from_data(TensorData::new(
            out,
            [n + if with_scale_grad { num_params } else { 0 }],
        ))
    }

    fn lsq_fake_quant(
        x: FlexTensor,
        scale: FlexTensor,
        zero_point: FlexTensor,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
    ) -> FlexTensor {
        Self::fake_quant_parts(x, scale, zero_point, qmin, qmax, o, g, l, i, per_group, 1)
            .reshape(Shape::new([o, g, l, i]))
    }
}

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant`]: one kernel recomputes the mask and
/// `∂x̂/∂s` from the saved input, giving `dx = grad · mask` and `ds = Σ grad · ∂x̂/∂s` per parameter.
#[derive(Debug)]
struct FakeQuantBackward;

/// What the backward kernel needs: the input, the grid and the view layout.
#[derive(Debug, Clone)]
struct FakeQuantState<P> {
    x: P,
    scale: P,
    zero_point: P,
    range: (f32, f32),
    view: [usize; 4],
    per_group: bool,
}

impl<B: FakeQuantKernels> Backward<B, 2> for FakeQuantBackward {
    type State = FakeQuantState<FloatTensor<B>>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let FakeQuantState {
            x,
            scale,
            zero_point,
            range: (qmin, qmax),
            view: [o, g, l, i],
            per_group,
        } = ops.state;
        let n = o * g * l * i;
        let with_scale_grad = ops.parents[1].is_some();
        let num_params = scale_len::<B>(&scale);
        let grad = grads.consume::<B>(&ops.node);
        let packed = B::fake_quant_backward(
            grad,
            x,
            scale,
            zero_point,
            qmin,
            qmax,
            o,
            g,
            l,
            i,
            per_group,
            with_scale_grad,
        );
        let slice = |start: usize, end: usize| Slice {
            start: start as isize,
            end: Some(end as isize),
            step: 1,
        };
        let [x_parent, scale_parent] = ops.parents;
        if let Some(node) = x_parent {
            let dx = B::float_reshape(
                B::float_slice(packed.clone(), &[slice(0, n)]),
                Shape::new([o, g, l, i]),
            );
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = scale_parent {
            grads.register::<B>(node.id, B::float_slice(packed, &[slice(n, n + num_params)]));
        }
    }
}

impl<B: FakeQuantKernels, C: CheckpointStrategy> FakeQuantKernels for Autodiff<B, C> {
    fn fake_quant_parts(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        parts: usize,
    ) -> FloatTensor<Self> {
        let out = B::fake_quant_parts(
            Self::inner(x),
            Self::inner(scale),
            Self::inner(zero_point),
            qmin,
            qmax,
            o,
            g,
            l,
            i,
            per_group,
            parts,
        );
        Self::from_inner(out)
    }

    fn max_abs_per_param(
        x: FloatTensor<Self>,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        num_params: usize,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::max_abs_per_param(
            Self::inner(x),
            o,
            g,
            l,
            i,
            per_group,
            num_params,
        ))
    }

    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
        with_scale_grad: bool,
    ) -> FloatTensor<Self> {
        let (grad, x, scale, zero_point) = (
            Self::inner(grad),
            Self::inner(x),
            Self::inner(scale),
            Self::inner(zero_point),
        );
        Self::from_inner(B::fake_quant_backward(
            grad,
            x,
            scale,
            zero_point,
            qmin,
            qmax,
            o,
            g,
            l,
            i,
            per_group,
            with_scale_grad,
        ))
    }

    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        o: usize,
        g: usize,
        l: usize,
        i: usize,
        per_group: bool,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let zero_point = Self::inner(zero_point);
        let dequantized = B::lsq_fake_quant(
            x.clone(),
            scale.clone(),
            zero_point.clone(),
            qmin,
            qmax,
            o,
            g,
            l,
            i,
            per_group,
        );
        match FakeQuantBackward
            .prepare::<C>([x_node, scale_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = FakeQuantState {
                    x,
                    scale,
                    zero_point,
                    range: (qmin, qmax),
                    view: [o, g, l, i],
                    per_group,
                };
                prep.finish(state, dequantized)
            }
            OpsKind::UnTracked(prep) => prep.finish(dequantized),
        }
    }
}

fn scale_len<B: Backend>(scale: &FloatTensor<B>) -> usize {
    use burn::backend::TensorMetadata;
    scale.shape().num_elements()
}

/// Fake quantization through the fused kernels (one forward, one backward pass), or `None` off
/// Flex: LSQ when `scale` is tracked, the clipped STE with a fixed scale when it is not. `scale` and `zero_point` are flat `[n]`.
pub(crate) fn fused_lsq(
    x: &Tensor<4>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    (qmin, qmax): (i32, i32),
    per_group: bool,
) -> Option<Tensor<4>> {
    if x.device().without_autodiff() != Device::flex() {
        return None;
    }
    let [o, g, l, i] = x.dims();
    let out = <Dispatch as FakeQuantKernels>::lsq_fake_quant(
        x.clone().into_dispatch(),
        scale.into_dispatch(),
        zero_point.into_dispatch(),
        qmin as f32,
        qmax as f32,
        o,
        g,
        l,
        i,
        per_group,
    );
    Some(Tensor::from_dispatch(out))
}

/// Per-parameter `max |x|` of a view through the Flex kernel, or `None` off Flex.
pub(crate) fn fused_max_abs(
    x: &Tensor<4>,
    per_group: bool,
    num_params: usize,
) -> Option<Tensor<1>> {
    let device = x.device();
    let autodiff = device.is_autodiff();
    if device.clone().without_autodiff() != Device::flex() {
        return None;
    }
    let inner: Tensor<4> = if autodiff {
        x.clone().inner()
    } else {
        x.clone()
    };
    let [o, g, l, i] = x.dims();
    let out = <Dispatch as FakeQuantKernels>::max_abs_per_param(
        inner.into_dispatch(),
        o,
        g,
        l,
        i,
        per_group,
        num_params,
    );
    let out = Tensor::<1>::from_dispatch(out);
    Some(if autodiff {
        Tensor::from_inner(out)
    } else {
        out
    })
}

/// The packed constants of [`FakeQuantKernels::fake_quant_parts`] as `parts` tensors shaped like
/// the view, or `None` when `x` is not on a Flex device (the caller then uses composite ops).
pub(crate) fn fused_parts(
    x: &Tensor<4>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    (qmin, qmax): (i32, i32),
    per_group: bool,
    parts: usize,
) -> Option<Vec<Tensor<4>>> {
    let device = x.device();
    let autodiff = device.is_autodiff();
    if device.clone().without_autodiff() != Device::flex() {
        return None;
    }
    let inner = |t: Tensor<1>| if autodiff { t.inner() } else { t };
    let x_inner: Tensor<4> = if autodiff {
        x.clone().inner()
    } else {
        x.clone()
    };
    let [o, g, l, i] = x.dims();
    let packed = <Dispatch as FakeQuantKernels>::fake_quant_parts(
        x_inner.into_dispatch(),
        inner(scale).into_dispatch(),
        inner(zero_point).into_dispatch(),
        qmin as f32,
        qmax as f32,
        o,
        g,
        l,
        i,
        per_group,
        parts,
    );
    let packed = Tensor::<1>::from_dispatch(packed);
    let packed = if autodiff {
        Tensor::from_inner(packed)
    } else {
        packed
    };
    let n = o * g * l * i;
    Some(
        (0..parts)
            .map(|k| packed.clone().narrow(0, k * n, n).reshape([o, g, l, i]))
            .collect(),
    )
}
