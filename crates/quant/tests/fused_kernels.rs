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
        let zp_for_reference = zp.clone();
        let reference = fake_quantize_learnable_view(
            x.clone(),
            layout.broadcast(grad_scale(scale.clone(), factor)),
            layout.broadcast(zp),
            -8,
            7,
        );
        let [grads_fused, _] =
            same_values_and_input_grad(name, fused, reference, &x, dy.clone(), (GRAD_ATOL, 1e-5));
        let fused_ds = values(scale.grad(&grads_fused).unwrap());
        // The exact scale gradient: the composite op's per-element terms `dy · ∂ŷ/∂s` (a scale
        // per element, so nothing is summed in f32), summed per scale in f64 on the host.
        let dims = x.dims();
        let per_element = layout.broadcast(scale.clone().detach()).expand(dims);
        let per_element = Tensor::<4>::from_data(per_element.into_data(), &device).require_grad();
        let y = fake_quantize_learnable_view(
            x.clone().detach(),
            per_element.clone(),
            layout.broadcast(zp_for_reference.clone()),
            -8,
            7,
        );
        let terms = values(
            per_element
                .grad(&(y * dy.clone()).sum().backward())
                .unwrap(),
        );
        let owner = values(
            layout
                .broadcast(Tensor::<1, burn::tensor::Int>::arange(0..n as i64, &device).float())
                .expand(dims),
        );
        let (mut exact, mut magnitude) = (vec![0f64; n], vec![0f64; n]);
        for (t, p) in terms.iter().zip(&owner) {
            exact[*p as usize] += *t as f64;
            magnitude[*p as usize] += t.abs() as f64;
        }
        // The fused kernel sums in f32 (16 lanes per part, parts in order): allow the pairwise
        // bound log2(N) · ε · Σ|terms| twice over, plus the f32 rounding of each term.
        let per_scale_elements = (dims.iter().product::<usize>() / n) as f64;
        for (i, (a, (e, m))) in fused_ds
            .iter()
            .zip(exact.iter().zip(&magnitude))
            .enumerate()
        {
            let e = (factor * e) as f32;
            let bound = 2.0 * per_scale_elements.log2().max(1.0) * f32::EPSILON as f64 * m;
            let tol = (factor * bound) as f32 + factor as f32 * GRAD_ATOL + 1e-5 * e.abs();
            assert!(
                (a - e).abs() <= tol,
                "{name}: dscale[{i}] = {a}, expected {e} (tolerance {tol})"
            );
        }
    }
}
