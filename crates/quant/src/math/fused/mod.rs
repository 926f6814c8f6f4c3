//! Fused fake-quantization kernels for the Flex (CPU) backend, as a Burn backend extension.
//!
//! Composite ops cost one memory pass each (about 15 for a clipped fake-quant); a fused kernel
//! makes one. Fixed-scale and LSQ fake quantization are one tracked op ([`autodiff`]) with one
//! forward and one backward kernel. LSQ+ (learned zero point) computes the dequantized values and
//! the gradient coefficients as *constants* and keeps the gradient with autodiff through
//! exact-zero tracked terms: `x̂ = dq + (x - x_c) · mask + (s - s_c) · A + (zp - zp_c) · B`,
//! where `_c` are the same values cut from the graph, so the forward value is exactly `dq` and the
//! gradients are `∂x̂/∂x = mask`, `∂x̂/∂s = A`, `∂x̂/∂zp = B` (see [`crate::fake_quantize_learnable`]).
//! Observers' per-parameter ranges are fused reductions too.
//! Other devices (wgpu, CUDA, …) use the composite ops, which burn-fusion already fuses there.
//!
//! Files: [`runs`] (how a view's elements map to parameters, and how large views are cut into
//! parts for rayon's threads), [`flex`] (the kernels), [`autodiff`] (the tracked op and its
//! backward).

mod autodiff;
mod flex;
mod runs;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{Device, Tensor};

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
        view: [usize; 4],
        per_group: bool,
        parts: usize,
    ) -> FloatTensor<Self>;

    /// Per-parameter `max |x|` of `x` viewed as `[o, g, l, i]` (one pass, no transposes).
    fn max_abs_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> FloatTensor<Self>;

    /// Per-parameter `(min, max)` of `x` viewed as `[o, g, l, i]` (one pass, no transposes).
    fn min_max_per_param(
        x: FloatTensor<Self>,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Backward of [`Self::lsq_fake_quant`] in one pass: `(dx, ds)`, recomputing the clip mask
    /// and `∂x̂/∂s` from `x`; `dx` may reuse `grad`'s memory, `ds` is empty unless `with_scale_grad`.
    #[allow(clippy::too_many_arguments)]
    fn fake_quant_backward(
        grad: FloatTensor<Self>,
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Fixed-scale fake quantization of a `[o, g, l, i]` view that also returns its clip mask,
    /// one bit per element packed in bytes (1 where `round(x / s)` lies on the grid): a fixed
    /// scale's backward pass needs only the mask, so the tracked op keeps it instead of `x`,
    /// 1/32 of the memory (PyTorch's `fake_quantize_per_tensor_affine_cachemask` keeps a byte).
    #[allow(clippy::too_many_arguments)]
    fn fake_quant_with_mask(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (FloatTensor<Self>, IntTensor<Self>);

    /// `grad · mask` for a bit mask from [`Self::fake_quant_with_mask`]; may reuse `grad`'s memory.
    fn apply_mask(grad: FloatTensor<Self>, mask: IntTensor<Self>) -> FloatTensor<Self>;

    /// LSQ fake quantization of a `[o, g, l, i]` view with a learned `scale` and a constant
    /// `zero_point`, differentiable in `x` (clipped STE) and `scale` (LSQ gradient times
    /// `grad_factor`, so LSQ's gradient scaling costs no ops of its own), as one forward kernel
    /// and one backward kernel. `clip_free` promises that no element falls outside the grid (see
    /// [`crate::kernels::fake_quantize_view_with`]): with a fixed scale the backward pass then hands the
    /// gradient through untouched.
    #[allow(clippy::too_many_arguments)]
    fn lsq_fake_quant(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        zero_point: FloatTensor<Self>,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        clip_free: bool,
        grad_factor: f32,
    ) -> FloatTensor<Self>;
}

/// Fake quantization through the fused kernels (one forward, one backward pass), or `None` off
/// Flex: LSQ when `scale` is tracked (its gradient multiplied by `grad_factor`), the clipped STE
/// with a fixed scale when it is not (the plain STE when `clip_free`). `scale` and `zero_point`
/// are flat `[n]`.
pub(crate) fn fused_lsq(
    x: &Tensor<4>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    (qmin, qmax): (i32, i32),
    per_group: bool,
    clip_free: bool,
    grad_factor: f64,
) -> Option<Tensor<4>> {
    if !on_flex(x) {
        return None;
    }
    let view = x.dims();
    let out = <Dispatch as FakeQuantKernels>::lsq_fake_quant(
        x.clone().into_dispatch(),
        scale.into_dispatch(),
        zero_point.into_dispatch(),
        qmin as f32,
        qmax as f32,
        view,
        per_group,
        clip_free,
        grad_factor as f32,
    );
    Some(Tensor::from_dispatch(out))
}

/// `x` without its autodiff wrapper, and a function that puts results back on `x`'s device kind.
fn untracked(x: &Tensor<4>) -> (Tensor<4>, impl Fn(Tensor<1>) -> Tensor<1>) {
    let autodiff = x.device().is_autodiff();
    let inner = if autodiff {
        x.clone().inner()
    } else {
        x.clone()
    };
    let rewrap = move |t: Tensor<1>| if autodiff { Tensor::from_inner(t) } else { t };
    (inner, rewrap)
}

/// Per-parameter `max |x|` of a view through the Flex kernel, or `None` off Flex.
pub(crate) fn fused_max_abs(
    x: &Tensor<4>,
    per_group: bool,
    num_params: usize,
) -> Option<Tensor<1>> {
    if !on_flex(x) {
        return None;
    }
    let (inner, rewrap) = untracked(x);
    let view = x.dims();
    let out = <Dispatch as FakeQuantKernels>::max_abs_per_param(
        inner.into_dispatch(),
        view,
        per_group,
        num_params,
    );
    Some(rewrap(Tensor::from_dispatch(out)))
}

/// Per-parameter `(min, max)` of a view through the Flex kernel, or `None` off Flex.
pub(crate) fn fused_min_max(
    x: &Tensor<4>,
    per_group: bool,
    num_params: usize,
) -> Option<(Tensor<1>, Tensor<1>)> {
    if !on_flex(x) {
        return None;
    }
    let (inner, rewrap) = untracked(x);
    let view = x.dims();
    let (min, max) = <Dispatch as FakeQuantKernels>::min_max_per_param(
        inner.into_dispatch(),
        view,
        per_group,
        num_params,
    );
    Some((
        rewrap(Tensor::from_dispatch(min)),
        rewrap(Tensor::from_dispatch(max)),
    ))
}

/// Whether `x` lives on Flex (with or without autodiff), where the fused kernels run.
fn on_flex(x: &Tensor<4>) -> bool {
    x.device().without_autodiff() == Device::flex()
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
    if !on_flex(x) {
        return None;
    }
    let autodiff = x.device().is_autodiff();
    let inner = |t: Tensor<1>| if autodiff { t.inner() } else { t };
    let (x_inner, rewrap) = untracked(x);
    let view = x.dims();
    let packed = <Dispatch as FakeQuantKernels>::fake_quant_parts(
        x_inner.into_dispatch(),
        inner(scale).into_dispatch(),
        inner(zero_point).into_dispatch(),
        qmin as f32,
        qmax as f32,
        view,
        per_group,
        parts,
    );
    let packed = rewrap(Tensor::<1>::from_dispatch(packed));
    let n: usize = view.iter().product();
    Some(
        (0..parts)
            .map(|k| packed.clone().narrow(0, k * n, n).reshape(view))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor};

    use super::*;

    /// The fused kernels are what keeps QAT cheap on Flex: a refactor that silently fell back to
    /// the composite ops would pass every numeric test and double the step time.
    #[test]
    fn flex_takes_the_fused_path_and_other_devices_do_not() {
        let check = |device: Device, expected: bool| {
            let x = Tensor::<4>::ones([2, 3, 1, 1], &device);
            let scale = Tensor::<1>::ones([3], &device);
            let zp = Tensor::<1>::zeros([3], &device);
            let fused = fused_lsq(&x, scale.clone(), zp.clone(), (-8, 7), false, false, 1.0);
            assert_eq!(fused.is_some(), expected, "fused_lsq on {device:?}");
            let parts = fused_parts(&x, scale, zp, (-8, 7), false, 1);
            assert_eq!(parts.is_some(), expected, "fused_parts on {device:?}");
            assert_eq!(fused_max_abs(&x, false, 3).is_some(), expected);
            assert_eq!(fused_min_max(&x, false, 3).is_some(), expected);
        };
        check(Device::flex(), true);
        check(Device::flex().autodiff(), true);
        #[cfg(feature = "wgpu")]
        check(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice), false);
    }
}
