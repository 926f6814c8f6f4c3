//! The fused Flex kernels against the composite-op reference on every parameter layout:
//! same forward values and the same gradients for `x` and the scale.
mod common;

use burn::tensor::{Device, Distribution, Gradients, Tensor};
use common::{assert_close, values};
use quant::kernels::{
    fake_quantize_layout, fake_quantize_learnable_layout, fake_quantize_learnable_view,
    fake_quantize_view_with,
};
use quant::{Granularity, ParamLayout, grad_scale, lsq_grad_factor, no_grad};

const ATOL: f32 = 1e-6;
/// Absolute slack for gradients; scale gradients also get a summation bound (see below).
const GRAD_ATOL: f32 = 1e-4;

fn layouts() -> Vec<(&'static str, Vec<usize>, Granularity)> {
    vec![
        ("per-tensor", vec![6, 10], Granularity::PerTensor),
        (
            "per-channel axis 1",
            vec![6, 10],
            Granularity::PerChannel { axis: Some(1) },
        ),
        (
            "per-channel axis 0 rank 4",
            vec![4, 3, 2, 2],
            Granularity::PerChannel { axis: Some(0) },
        ),
        (
            "per-channel axis 1 rank 4",
            vec![2, 4, 3, 3],
            Granularity::PerChannel { axis: Some(1) },
        ),
        (
            "per-group axis 0",
            vec![8, 5],
            Granularity::PerGroup {
                axis: Some(0),
                group_size: 4,
            },
        ),
        (
            "per-group axis 1 rank 3",
            vec![3, 8, 2],
            Granularity::PerGroup {
                axis: Some(1),
                group_size: 2,
            },
        ),
        // Large enough for the two-worker split (2^20 elements), which cuts a run in two.
        ("large per-tensor", vec![1031, 1025], Granularity::PerTensor),
        (
            "large per-channel axis 1",
            vec![1025, 1031],
            Granularity::PerChannel { axis: Some(1) },
        ),
        (
            "large per-channel axis 0",
            vec![1031, 1025],
            Granularity::PerChannel { axis: Some(0) },
        ),
        (
            "large per-group axis 0",
            vec![1024, 1031],
            Granularity::PerGroup {
                axis: Some(0),
                group_size: 32,
            },
        ),
    ]
}

fn view(shape: &[usize], layout: &ParamLayout, device: &Device) -> Tensor<4> {
    let n: usize = shape.iter().product();
    let x = Tensor::<1>::random([n], Distribution::Normal(0.0, 2.0), device);
    layout.to_view(x).detach().require_grad()
}

/// Asserts that `fused` and `reference` (both computed from `x`) have the same values within
/// `ATOL` and the same gradient for `x` under the upstream gradient `dy` within `(atol, rtol)`;
/// returns both sides' gradients, fused first, for further checks.
fn same_values_and_input_grad(
    name: &str,
    fused: Tensor<4>,
    reference: Tensor<4>,
    x: &Tensor<4>,
    dy: Tensor<4>,
    (dx_atol, dx_rtol): (f32, f32),
) -> [Gradients; 2] {
    assert_close(
        name,
        "y",
        &values(fused.clone()),
        &values(reference.clone()),
        ATOL,
        0.0,
    );
    let grads = [fused, reference].map(|y| (y * dy.clone()).sum().backward());
    let [dx, dx_reference] = [&grads[0], &grads[1]].map(|g| values(x.grad(g).unwrap()));
    assert_close(name, "dx", &dx, &dx_reference, dx_atol, dx_rtol);
    grads
}

#[test]
fn fused_fixed_fake_quant_equals_composite() {
    let device = Device::flex().autodiff();
    // Zero points per parameter (the kernels' per-parameter loops) and one for all (the
    // uniform-range loops).
    for ((name, shape, granularity), uniform) in layouts()
        .into_iter()
        .flat_map(|l| [(l.clone(), false), (l, true)])
    {
        let name = &format!(
            "{name} ({} zero point)",
            if uniform { "one" } else { "random" }
        );
        let layout = ParamLayout::new(&shape, &granularity);
        let n = layout.num_params();
        let scale = Tensor::<1>::random([n], Distribution::Uniform(0.05, 0.4), &device);
        let zp = if uniform {
            Tensor::<1>::full([n], 8.0, &device)
        } else {
            Tensor::<1>::random([n], Distribution::Uniform(0.0, 15.0), &device).round()
        };
        let x = view(&shape, &layout, &device);
        let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
        let fused = fake_quantize_layout(
            x.clone(),
            &layout,
            scale.clone(),
            Some(zp.clone()),
            (0, 15),
            true,
        );
        let reference = fake_quantize_view_with(
            x.clone(),
            layout.broadcast(scale),
            Some(layout.broadcast(zp)),
            0,
            15,
            true,
        );
        same_values_and_input_grad(name, fused, reference, &x, dy, (ATOL, 0.0));
    }
}

/// With a scale taken from the tensor's own max |x| on a symmetric narrow grid nothing can clip,
/// and the promise `clip_possible = false` lets the fused op hand the gradient through untouched:
/// same values and gradients as the composite ops, and exactly the incoming gradient.
#[test]
fn fused_clip_free_fake_quant_passes_the_gradient_through() {
    let device = Device::flex().autodiff();
    for (name, shape, granularity) in layouts() {
        let layout = ParamLayout::new(&shape, &granularity);
        let x = view(&shape, &layout, &device);
        let max_abs = if layout.num_params() == 1 {
            x.clone().detach().abs().max().reshape([1])
        } else {
            layout.reduce(x.clone().detach().abs(), |t, axes| t.max_dims(axes))
        };
        let scale = no_grad(max_abs.div_scalar(127.0));
        let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
        let fused =
            fake_quantize_layout(x.clone(), &layout, scale.clone(), None, (-127, 127), false);
        let reference =
            fake_quantize_view_with(x.clone(), layout.broadcast(scale), None, -127, 127, false);
        let [grads, _] =
            same_values_and_input_grad(name, fused, reference, &x, dy.clone(), (0.0, 0.0));
        let dx = values(x.grad(&grads).unwrap());
        assert_close(name, "dx = dy", &dx, &values(dy), 0.0, 0.0);
    }
}

#[test]
fn fused_lsq_equals_composite() {
    lsq_equals_composite(layouts());
}

/// On machines with four or more threads the kernels cut large tensors into many parts (see
/// `runs::split_min`); CI has two, so run the large layouts in a four-thread pool.
#[test]
fn fused_lsq_split_over_four_threads_equals_composite() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .expect("a four-thread pool");
    let large = layouts()
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("large"))
        .collect();
    pool.install(|| lsq_equals_composite(large));
}

/// LSQ through the fused op against the composite reference on `layouts`, with one zero point
/// for all parameters and with one per parameter.
fn lsq_equals_composite(layouts: Vec<(&'static str, Vec<usize>, Granularity)>) {
    let device = Device::flex().autodiff();
    // One zero point for all parameters (a symmetric grid: the kernels' uniform-range loops) and
    // one per parameter (constant affine zero points: the per-parameter loops).
    for ((name, shape, granularity), affine) in layouts
        .into_iter()
        .flat_map(|l| [(l.clone(), false), (l, true)])
    {
        let name = &format!("{name} ({})", if affine { "affine" } else { "symmetric" });
        let layout = ParamLayout::new(&shape, &granularity);
        let n = layout.num_params();
        let scale =
            Tensor::<1>::random([n], Distribution::Uniform(0.05, 0.4), &device).require_grad();
        let zp = if affine {
            Tensor::<1>::random([n], Distribution::Uniform(-3.0, 3.0), &device).round()
        } else {
            Tensor::<1>::zeros([n], &device)
        };
        let x = view(&shape, &layout, &device);
        let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
        // LSQ's gradient factor: applied by the fused op's backward, by `grad_scale` in the reference.
        let factor = lsq_grad_factor(x.dims().iter().product::<usize>() / n, 7);
        let fused = fake_quantize_learnable_layout(
            x.clone(),
            &layout,
            scale.clone(),
            zp.clone(),
            (-8, 7),
            factor,
        );
        let reference = fake_quantize_learnable_view(
            x.clone(),
            layout.broadcast(grad_scale(scale.clone(), factor)),
            layout.broadcast(zp),
            -8,
            7,
        );
        let [grads_fused, grads_reference] =
            same_values_and_input_grad(name, fused, reference, &x, dy.clone(), (GRAD_ATOL, 1e-5));
        let ds = |g| values(scale.grad(g).unwrap());
        // Each scale gradient is `factor` times a sum of `dy · ∂y/∂s` over the elements the scale
        // covers, with |∂y/∂s| ≤ max(|qmin - zp|, |qmax - zp|) ≤ 11. The two sides sum in
        // different orders, and the sum cancels heavily (clipped elements contribute qmin - zp or
        // qmax - zp), so the error scales with the sum of magnitudes, not with the result: allow
        // the pairwise-summation bound log2(N) · ε · Σ|terms| per scale (times `factor`).
        // Σ|dy| per scale is the gradient of Σ|dy|·s.
        let abs_dy_per_scale = {
            let s = scale.clone().detach().require_grad();
            let grads = (layout.broadcast(s.clone()) * dy.clone().abs())
                .sum()
                .backward();
            values(s.grad(&grads).unwrap())
        };
        let per_scale_elements = (x.dims().iter().product::<usize>() / n) as f32;
        // Neither side sums pairwise (the fused kernel in 16 lanes per part, Burn's reduction in
        // its own order), so the pairwise bound is the typical error, not the largest: a CI run
        // saw 1.25 times it on the 2^20-element per-tensor layout. Allow four times it.
        let summation_bound = 4.0 * per_scale_elements.log2().max(1.0) * f32::EPSILON * 11.0;
        let (fused_ds, reference_ds) = (ds(&grads_fused), ds(&grads_reference));
        for (i, ((a, e), abs_dy)) in fused_ds
            .iter()
            .zip(&reference_ds)
            .zip(&abs_dy_per_scale)
            .enumerate()
        {
            let tol = factor as f32 * (GRAD_ATOL + summation_bound * abs_dy) + 1e-4 * e.abs();
            assert!(
                (a - e).abs() <= tol,
                "{name}: dscale[{i}] = {a}, expected {e} (tolerance {tol})"
            );
        }
    }
}
