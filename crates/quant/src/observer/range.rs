//! Per-batch range estimators: min-max, percentile and MSE-optimal clipping.
//!
//! Each takes a 4-D view (see [`crate::ParamLayout`]) and returns one `(min, max)` per parameter,
//! as flat `[n]` tensors without gradients.

use burn::tensor::{Int, Tensor};

use crate::kernels::fake_quantize_view;
use crate::{ParamLayout, QuantSpec, no_grad, qparams_from_range};

/// Minimum and maximum of every parameter's elements.
pub fn batch_min_max(view: Tensor<4>, layout: &ParamLayout) -> (Tensor<1>, Tensor<1>) {
    let view = no_grad(view);
    if let Some(fused) =
        crate::math::fused_min_max(&view, layout.is_per_group(), layout.num_params())
    {
        return fused;
    }
    if layout.num_params() == 1 {
        return (view.clone().min(), view.max());
    }
    let min = layout.reduce(view.clone(), |t, axes| t.min_dims(axes));
    let max = layout.reduce(view, |t, axes| t.max_dims(axes));
    (min, max)
}

/// Largest magnitude of every parameter's elements (all a symmetric grid needs).
pub fn batch_max_abs(view: Tensor<4>, layout: &ParamLayout) -> Tensor<1> {
    let view = no_grad(view);
    if let Some(fused) =
        crate::math::fused_max_abs(&view, layout.is_per_group(), layout.num_params())
    {
        return fused;
    }
    if layout.num_params() == 1 {
        return view.max_abs();
    }
    layout.reduce(view, |t, axes| t.max_abs_dims(axes))
}

/// The `percentile`-th largest and `(100 - percentile)`-th smallest element of every parameter's
/// elements (nearest rank).
pub fn batch_percentile(
    view: Tensor<4>,
    layout: &ParamLayout,
    percentile: f64,
) -> (Tensor<1>, Tensor<1>) {
    let rows = layout.rows(no_grad(view)).sort(1);
    let m = layout.elems_per_param();
    let hi = ((percentile / 100.0) * (m - 1) as f64).round() as usize;
    let lo = (m - 1) - hi;
    let n = layout.num_params();
    let min = rows.clone().narrow(1, lo, 1).reshape([n]);
    let max = rows.narrow(1, hi, 1).reshape([n]);
    (min, max)
}

/// The shrunken min-max range `α · (min, max)`, `α ∈ {1/grid, 2/grid, …, 1}`, whose fake
/// quantization has the least mean squared error, chosen per parameter.
pub fn batch_mse_optimal(
    view: Tensor<4>,
    layout: &ParamLayout,
    spec: &QuantSpec,
    grid: usize,
) -> (Tensor<1>, Tensor<1>) {
    let view = no_grad(view);
    let device = view.device();
    let (min, max) = batch_min_max(view.clone(), layout);
    let alphas: Vec<f32> = (1..=grid).map(|k| k as f32 / grid as f32).collect();
    let errors: Vec<Tensor<1>> = alphas
        .iter()
        .map(|&alpha| {
            let qp = qparams_from_range(
                min.clone().mul_scalar(alpha),
                max.clone().mul_scalar(alpha),
                spec,
            );
            let fq = fake_quantize_view(
                view.clone(),
                layout.broadcast(qp.scale),
                layout.broadcast(qp.zero_point),
                spec.qmin(),
                spec.qmax(),
            );
            let err = (fq - view.clone()).square();
            if layout.num_params() == 1 {
                err.mean()
            } else {
                layout.reduce(err, |t, axes| t.mean_dims(axes))
            }
        })
        .collect();
    let best: Tensor<1, Int> = Tensor::stack::<2>(errors, 0)
        .argmin(0)
        .reshape([layout.num_params()]);
    let alpha = Tensor::<1>::from_floats(alphas.as_slice(), &device).select(0, best);
    (min * alpha.clone(), max * alpha)
}
