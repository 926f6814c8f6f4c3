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
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
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

impl Runs {
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
    fn max_abs_per_param(x: FloatTensor<Self>, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FloatTensor<Self>;

    /// Per-parameter `Σ grad · coef` over `[o, g, l, i]` views (the scale gradient of LSQ).
    #[allow(clippy::too_many_arguments)]
    fn sum_per_param(grad: FloatTensor<Self>, coef: FloatTensor<Self>, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FloatTensor<Self>;

    /// LSQ fake quantization of a `[o, g, l, i]` view with a learned `scale` and a constant
    /// `zero_point`, differentiable in `x` (clipped STE) and `scale` (LSQ gradient), as one
    /// forward kernel and one backward kernel.
    #[allow(clippy::too_many_arguments)]
    fn lsq_fake_quant(x: FloatTensor<Self>, scale: FloatTensor<Self>, zero_point: FloatTensor<Self>, qmin: f32, qmax: f32, o: usize, g: usize, l: usize, i: usize, per_group: bool) -> FloatTensor<Self>;
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
    t.as_slice::<f32>().expect("fused fake-quant takes f32 tensors").to_vec()
}

/// Per-parameter constants of the grid: `scale`, `1/scale`, and the code range `[qmin - zp, qmax - zp]`.
struct Grid {
    scale: Vec<f32>,
    inv: Vec<f32>,
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Grid {
    /// Writes `f(x, scale, 1/scale, lo, hi)` for every element into `out`, run by run, with the
    /// per-parameter constants hoisted (stride 0) or zipped (stride 1) so the loops vectorise.
    #[inline(always)]
    fn map(&self, runs: &Runs, xs: &[f32], out: &mut [f32], f: impl Fn(f32, f32, f32, f32, f32) -> f32 + Copy) {
        runs.for_each(|start, len, p0, stride| {
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
        });
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
        let x = if x.is_contiguous() { x } else { x.to_contiguous() };
        let xs = x.as_slice::<f32>().expect("fused fake-quant takes f32 tensors");
        let scale = f32s(&scale);
        let zps: Vec<f32> = f32s(&zero_point).iter().map(|z| z.round_ties_even().clamp(qmin, qmax)).collect();
        let grid = Grid {
            inv: scale.iter().map(|s| 1.0 / s).collect(),
            lo: zps.iter().map(|z| qmin - z).collect(),
            hi: zps.iter().map(|z| qmax - z).collect(),
            scale,
        };
        let n = xs.len();
        let runs = Runs { view: [o, g, l, i], per_group, num_params: grid.scale.len() };
        let mut out = vec![0f32; n * parts];
        let mut chunks = out.chunks_mut(n);
        // dq = (q - zp) · s
        grid.map(&runs, xs, chunks.next().unwrap(), |x, s, inv, lo, hi| code(x, inv, lo, hi) * s);
        if let Some(mask) = chunks.next() {
            grid.map(&runs, xs, mask, |x, _, inv, lo, hi| in_range(x, inv, lo, hi));
        }
        // ∂x̂/∂s: (q - zp) - x/s inside the grid, (q - zp) outside.
        if let Some(coef_s) = chunks.next() {
            grid.map(&runs, xs, coef_s, |x, _, inv, lo, hi| code(x, inv, lo, hi) - x * inv * in_range(x, inv, lo, hi));
        }
        // ∂x̂/∂zp: 0 inside, -s outside.
        if let Some(coef_z) = chunks.next() {
            grid.map(&runs, xs, coef_z, |x, s, inv, lo, hi| -s * (1.0 - in_range(x, inv, lo, hi)));
        }
        FlexTensor::from_data(TensorData::new(out, [n * parts]))
    }

    fn max_abs_per_param(x: FlexTensor, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FlexTensor {
        let x = if x.is_contiguous() { x } else { x.to_contiguous() };
        let xs = x.as_slice::<f32>().expect("fused fake-quant takes f32 tensors");
        let mut acc = vec![0f32; num_params];
        let runs = Runs { view: [o, g, l, i], per_group, num_params };
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

    fn sum_per_param(grad: FlexTensor, coef: FlexTensor, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FlexTensor {
        let grad = if grad.is_contiguous() { grad } else { grad.to_contiguous() };
        let coef = if coef.is_contiguous() { coef } else { coef.to_contiguous() };
        let gs = grad.as_slice::<f32>().expect("f32 gradient");
        let cs = coef.as_slice::<f32>().expect("f32 coefficients");
        let mut acc = vec![0f32; num_params];
        let runs = Runs { view: [o, g, l, i], per_group, num_params };
        runs.for_each(|start, len, p0, stride| {
            let (gr, co) = (&gs[start..start + len], &cs[start..start + len]);
            if stride == 0 {
                acc[p0] += gr.iter().zip(co).map(|(a, b)| a * b).sum::<f32>();
            } else {
                for ((m, a), b) in acc[p0..p0 + len].iter_mut().zip(gr).zip(co) {
                    *m += a * b;
                }
            }
        });
        FlexTensor::from_data(TensorData::new(acc, [num_params]))
    }

    fn lsq_fake_quant(x: FlexTensor, scale: FlexTensor, zero_point: FlexTensor, qmin: f32, qmax: f32, o: usize, g: usize, l: usize, i: usize, per_group: bool) -> FlexTensor {
        Self::fake_quant_parts(x, scale, zero_point, qmin, qmax, o, g, l, i, per_group, 1).reshape(Shape::new([o, g, l, i]))
    }
}

/// The backward pass of [`FakeQuantKernels::lsq_fake_quant`]: `dx = grad · mask`,
/// `ds = Σ grad · A` per parameter, from the mask and coefficients saved by the forward kernel.
#[derive(Debug)]
struct LsqBackward;

impl<B: FakeQuantKernels> Backward<B, 2> for LsqBackward {
    /// The packed `[dq | mask | A]` of the forward kernel, the view and the parameter layout.
    type State = (FloatTensor<B>, [usize; 4], bool, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (packed, [o, g, l, i], per_group, num_params) = ops.state;
        let n = o * g * l * i;
        let part = |k: usize| {
            let slice = Slice { start: (k * n) as isize, end: Some(((k + 1) * n) as isize), step: 1 };
            B::float_reshape(B::float_slice(packed.clone(), &[slice]), Shape::new([o, g, l, i]))
        };
        let (mask, coef) = (part(1), part(2));
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| B::float_mul(grad, mask),
            |grad| B::sum_per_param(grad, coef, o, g, l, i, per_group, num_params),
        );
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
        let out = B::fake_quant_parts(Self::inner(x), Self::inner(scale), Self::inner(zero_point), qmin, qmax, o, g, l, i, per_group, parts);
        Self::from_inner(out)
    }

    fn max_abs_per_param(x: FloatTensor<Self>, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FloatTensor<Self> {
        Self::from_inner(B::max_abs_per_param(Self::inner(x), o, g, l, i, per_group, num_params))
    }

    fn sum_per_param(grad: FloatTensor<Self>, coef: FloatTensor<Self>, o: usize, g: usize, l: usize, i: usize, per_group: bool, num_params: usize) -> FloatTensor<Self> {
        Self::from_inner(B::sum_per_param(Self::inner(grad), Self::inner(coef), o, g, l, i, per_group, num_params))
    }

    fn lsq_fake_quant(x: FloatTensor<Self>, scale: FloatTensor<Self>, zero_point: FloatTensor<Self>, qmin: f32, qmax: f32, o: usize, g: usize, l: usize, i: usize, per_group: bool) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (scale, scale_node) = scale.into_parts();
        let zero_point = Self::inner(zero_point);
        let num_params = scale_len::<B>(&scale);
        let n = o * g * l * i;
        let packed = B::fake_quant_parts(x, scale, zero_point, qmin, qmax, o, g, l, i, per_group, 3);
        let first = Slice { start: 0, end: Some(n as isize), step: 1 };
        let dequantized = B::float_reshape(B::float_slice(packed.clone(), &[first]), Shape::new([o, g, l, i]));
        match LsqBackward.prepare::<C>([x_node, scale_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((packed, [o, g, l, i], per_group, num_params), dequantized),
            OpsKind::UnTracked(prep) => prep.finish(dequantized),
        }
    }
}

fn scale_len<B: Backend>(scale: &FloatTensor<B>) -> usize {
    use burn::backend::TensorMetadata;
    scale.shape().num_elements()
}

/// LSQ with a learned scale and constant zero point through the fused kernels (forward and
/// backward), or `None` off Flex. `scale` and `zero_point` are flat `[n]`.
pub(crate) fn fused_lsq(x: &Tensor<4>, scale: Tensor<1>, zero_point: Tensor<1>, (qmin, qmax): (i32, i32), per_group: bool) -> Option<Tensor<4>> {
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
pub(crate) fn fused_max_abs(x: &Tensor<4>, per_group: bool, num_params: usize) -> Option<Tensor<1>> {
    let device = x.device();
    let autodiff = device.is_autodiff();
    if device.clone().without_autodiff() != Device::flex() {
        return None;
    }
    let inner: Tensor<4> = if autodiff { x.clone().inner() } else { x.clone() };
    let [o, g, l, i] = x.dims();
    let out = <Dispatch as FakeQuantKernels>::max_abs_per_param(inner.into_dispatch(), o, g, l, i, per_group, num_params);
    let out = Tensor::<1>::from_dispatch(out);
    Some(if autodiff { Tensor::from_inner(out) } else { out })
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
    let x_inner: Tensor<4> = if autodiff { x.clone().inner() } else { x.clone() };
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
    let packed = if autodiff { Tensor::from_inner(packed) } else { packed };
    let n = o * g * l * i;
    Some((0..parts).map(|k| packed.clone().narrow(0, k * n, n).reshape([o, g, l, i])).collect())
}
