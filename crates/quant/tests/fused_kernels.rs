//! The fused kernels (Flex, and CubeCL on wgpu with the `wgpu` feature: lavapipe in CI) against
//! the composite-op reference on every parameter layout: same forward values, the same gradients
//! for `x`, the scale and the zero point, and the same observer ranges.
//!
//! The reference always runs on Flex, from copies of the same inputs ([`twin`]): on lavapipe,
//! burn 0.22.1's own fused kernels for the composite ops go wrong on large tensors (from element
//! 65,535 of a 1031 × 1025 tensor the composite LSQ's input gradient came out multiplied by the
//! scale, and `max()` missed the largest element), so a wgpu reference would test burn-fusion,
//! not ours.
mod common;

use burn::tensor::{Device, Distribution, Gradients, Tensor};
use common::{assert_close, devices, values};
use quant::kernels::{
    fake_quantize_layout, fake_quantize_learnable_layout, fake_quantize_learnable_view,
    fake_quantize_view_with,
};
use quant::{Granularity, ParamLayout, grad_scale, lsq_grad_factor, no_grad};

/// The tests here run one at a time: with them in parallel, `fused_lsq_split_over_four_threads`
/// once saw one forward value a quantization step off (1 run in 4, never alone in 8 runs). A
/// cause of such one-step misses, found 2026-12-05: the reference's `grad_scale` moved about one
/// scale in 170 by an ulp, which flips a code that sits on a rounding tie (inputs are random, so
/// roughly one run in ten had one); it keeps the value exactly now.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

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
        ("odd per-tensor", vec![7, 13], Granularity::PerTensor),
        ("per-token rank 3", vec![3, 5, 8], Granularity::PerToken),
        // More elements per parameter than one GPU reduction cube takes (4096): partial sums.
        (
            "long per-channel axis 0",
            vec![3, 5000],
            Granularity::PerChannel { axis: Some(0) },
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

/// A copy of `t` on the reference device (Flex with autodiff), a gradient leaf if `t` is one.
fn twin<const D: usize>(t: &Tensor<D>) -> Tensor<D> {
    let copy = Tensor::<D>::from_data(t.to_data(), &Device::flex().autodiff());
    if t.is_require_grad() {
        copy.require_grad()
    } else {
        copy
    }
}

/// Asserts that `fused` (computed from `x`) and `reference` (computed from `x_ref`, its
/// [`twin`]) have the same values within `ATOL` and the same gradient for `x` under the upstream
/// gradient `dy` within `(atol, rtol)`; returns both sides' gradients, fused first.
fn same_values_and_input_grad(
    name: &str,
    (fused, x): (Tensor<4>, &Tensor<4>),
    (reference, x_ref): (Tensor<4>, &Tensor<4>),
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
    let grads = [
        (fused * dy.clone()).sum().backward(),
        (reference * twin(&dy)).sum().backward(),
    ];
    let dx = values(x.grad(&grads[0]).unwrap());
    let dx_reference = values(x_ref.grad(&grads[1]).unwrap());
    assert_close(name, "dx", &dx, &dx_reference, dx_atol, dx_rtol);
    grads
}

/// Every device with fused kernels, with autodiff, and its name for messages.
fn kernel_devices() -> Vec<(&'static str, Device)> {
    devices()
        .into_iter()
        .map(|(name, device)| (name, device.autodiff()))
        .collect()
}

#[test]
fn fused_fixed_fake_quant_equals_composite() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        fixed_equals_composite(device_name, device, layouts());
    }
}

/// The fixed-scale forward writes its clip mask 8 elements to a byte; split over four threads
/// (many parts) no two parts may write the same byte of it.
#[test]
fn fused_fixed_split_over_four_threads_equals_composite() {
    let _serial = serial();
    on_four_threads(|| fixed_equals_composite("flex", Device::flex().autodiff(), large_layouts()));
}

/// On machines with four or more threads the kernels cut large tensors into many parts (see
/// `runs::split_min`); CI has two, so the split tests run `f` in a four-thread pool.
fn on_four_threads(f: impl FnOnce() + Send) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .expect("a four-thread pool")
        .install(f)
}

/// The layouts large enough to be split across threads.
fn large_layouts() -> Vec<(&'static str, Vec<usize>, Granularity)> {
    layouts()
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("large"))
        .collect()
}

fn fixed_equals_composite(
    device_name: &str,
    device: Device,
    layouts: Vec<(&'static str, Vec<usize>, Granularity)>,
) {
    // Zero points per parameter (the kernels' per-parameter loops) and one for all (the
    // uniform-range loops).
    for ((name, shape, granularity), uniform) in layouts
        .into_iter()
        .flat_map(|l| [(l.clone(), false), (l, true)])
    {
        let name = &format!(
            "{device_name}: {name} ({} zero point)",
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
        fixed_uint4_equals_composite(name, &x, &layout, (scale, zp), dy);
    }
}

/// Fixed-scale uint4 fake quantization of `x` (clipping possible: the mask in the backward pass),
/// fused against the composite ops on Flex: values and `dx` under `dy`.
fn fixed_uint4_equals_composite(
    name: &str,
    x: &Tensor<4>,
    layout: &ParamLayout,
    (scale, zp): (Tensor<1>, Tensor<1>),
    dy: Tensor<4>,
) {
    let fused = fake_quantize_layout(
        x.clone(),
        layout,
        scale.clone(),
        Some(zp.clone()),
        (0, 15),
        true,
    );
    let x_ref = twin(x);
    let reference = fake_quantize_view_with(
        x_ref.clone(),
        layout.broadcast(twin(&scale)),
        Some(layout.broadcast(twin(&zp))),
        0,
        15,
        true,
    );
    same_values_and_input_grad(name, (fused, x), (reference, &x_ref), dy, (ATOL, 0.0));
}

/// With a scale taken from the tensor's own max |x| on a symmetric narrow grid nothing can clip,
/// and the promise `clip_possible = false` lets the fused op hand the gradient through untouched:
/// same values and gradients as the composite ops, and exactly the incoming gradient.
#[test]
fn fused_clip_free_fake_quant_passes_the_gradient_through() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        clip_free_passes_the_gradient_through(device_name, device);
    }
}

fn clip_free_passes_the_gradient_through(device_name: &str, device: Device) {
    for (name, shape, granularity) in layouts() {
        let name = &format!("{device_name}: {name}");
        let layout = ParamLayout::new(&shape, &granularity);
        let x = view(&shape, &layout, &device);
        // The kernels' own max |x|, pinned to the host's by `fused_observer_ranges_equal_host_extremes`.
        let max_abs = quant::batch_max_abs(x.clone().detach(), &layout);
        let scale = no_grad(max_abs.div_scalar(127.0));
        let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
        let fused =
            fake_quantize_layout(x.clone(), &layout, scale.clone(), None, (-127, 127), false);
        let x_ref = twin(&x);
        let reference = fake_quantize_view_with(
            x_ref.clone(),
            layout.broadcast(twin(&scale)),
            None,
            -127,
            127,
            false,
        );
        let [grads, _] = same_values_and_input_grad(
            name,
            (fused, &x),
            (reference, &x_ref),
            dy.clone(),
            (0.0, 0.0),
        );
        let dx = values(x.grad(&grads).unwrap());
        assert_close(name, "dx = dy", &dx, &values(dy), 0.0, 0.0);
    }
}

#[test]
fn fused_lsq_equals_composite() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        lsq_equals_composite(device_name, device, layouts());
    }
}

/// LSQ's kernels split over four threads (see [`on_four_threads`]).
#[test]
fn fused_lsq_split_over_four_threads_equals_composite() {
    let _serial = serial();
    on_four_threads(|| lsq_equals_composite("flex", Device::flex().autodiff(), large_layouts()));
}

/// LSQ through the fused op against the composite reference on `layouts`, with one zero point
/// for all parameters and with one per parameter.
fn lsq_equals_composite(
    device_name: &str,
    device: Device,
    layouts: Vec<(&'static str, Vec<usize>, Granularity)>,
) {
    // One zero point for all parameters (a symmetric grid: the kernels' uniform-range loops) and
    // one per parameter (constant affine zero points: the per-parameter loops).
    for ((name, shape, granularity), affine) in layouts
        .into_iter()
        .flat_map(|l| [(l.clone(), false), (l, true)])
    {
        let name = &format!(
            "{device_name}: {name} ({})",
            if affine { "affine" } else { "symmetric" }
        );
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
        let (x_ref, zp_ref) = (twin(&x), twin(&zp));
        let reference = fake_quantize_learnable_view(
            x_ref.clone(),
            layout.broadcast(grad_scale(twin(&scale), factor)),
            layout.broadcast(zp_ref.clone()),
            -8,
            7,
        );
        let [grads_fused, _] = same_values_and_input_grad(
            name,
            (fused, &x),
            (reference, &x_ref),
            dy.clone(),
            (GRAD_ATOL, 1e-5),
        );
        let fused_ds = values(scale.grad(&grads_fused).unwrap());
        // The exact scale gradient: the composite op's per-element terms `dy · ∂ŷ/∂s` (a scale
        // per element, so nothing is summed in f32), summed per scale in f64 on the host.
        let dims = x.dims();
        let reference_device = x_ref.device();
        let per_element = layout.broadcast(twin(&scale).detach()).expand(dims);
        let per_element =
            Tensor::<4>::from_data(per_element.into_data(), &reference_device).require_grad();
        let y = fake_quantize_learnable_view(
            x_ref.clone().detach(),
            per_element.clone(),
            layout.broadcast(zp_ref),
            -8,
            7,
        );
        let terms = values(per_element.grad(&(y * twin(&dy)).sum().backward()).unwrap());
        let owner = values(
            layout
                .broadcast(
                    Tensor::<1, burn::tensor::Int>::arange(0..n as i64, &reference_device).float(),
                )
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

/// LSQ+ (learned scale and zero point): the fused constants `[dq | mask | ∂x̂/∂s | ∂x̂/∂zp]`
/// against the composite reference, values and the gradients of `x`, the scale and the zero point.
#[test]
fn fused_lsq_plus_equals_composite() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        for (name, shape, granularity) in layouts() {
            let name = &format!("{device_name}: {name} (lsq+)");
            let layout = ParamLayout::new(&shape, &granularity);
            let n = layout.num_params();
            let scale =
                Tensor::<1>::random([n], Distribution::Uniform(0.05, 0.4), &device).require_grad();
            // Raw zero points: both sides round and clamp them onto the grid.
            let zp = Tensor::<1>::random([n], Distribution::Uniform(-20.0, 270.0), &device)
                .require_grad();
            let x = view(&shape, &layout, &device);
            let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
            let factor = lsq_grad_factor(x.dims().iter().product::<usize>() / n, 255);
            let fused = fake_quantize_learnable_layout(
                x.clone(),
                &layout,
                scale.clone(),
                zp.clone(),
                (0, 255),
                factor,
            );
            let (x_ref, scale_ref, zp_ref) = (twin(&x), twin(&scale), twin(&zp));
            let reference = fake_quantize_learnable_view(
                x_ref.clone(),
                layout.broadcast(grad_scale(scale_ref.clone(), factor)),
                layout.broadcast(grad_scale(zp_ref.clone(), factor)),
                0,
                255,
            );
            let [fused_grads, reference_grads] = same_values_and_input_grad(
                name,
                (fused, &x),
                (reference, &x_ref),
                dy,
                (GRAD_ATOL, 1e-5),
            );
            for (what, param, param_ref) in [
                ("dscale", &scale, &scale_ref),
                ("dzero_point", &zp, &zp_ref),
            ] {
                let a = values(param.grad(&fused_grads).unwrap());
                let e = values(param_ref.grad(&reference_grads).unwrap());
                // Both sides sum a parameter's `m` terms (each at most `8 · factor`) in f32, in
                // different orders: allow `√m · ε` of their total magnitude.
                let m = (x.dims().iter().product::<usize>() / n) as f32;
                let atol = 1e-4 + 8.0 * factor as f32 * m * m.sqrt() * f32::EPSILON;
                assert_close(name, what, &a, &e, atol, 1e-3);
            }
        }
    }
}

/// The observers' per-parameter reductions (max |x| for symmetric grids, min and max for affine
/// ones): the fused kernels return exactly the extremes computed on the host. (The host, not
/// burn's composite reductions: on lavapipe, burn 0.22.1's `max()` of a 1031 × 1025 tensor
/// returned 8.93 where the largest element is 10.98.)
#[test]
fn fused_observer_ranges_equal_host_extremes() {
    let _serial = serial();
    for (device_name, device) in devices() {
        for (name, shape, granularity) in layouts() {
            let name = &format!("{device_name}: {name}");
            let layout = ParamLayout::new(&shape, &granularity);
            let n: usize = shape.iter().product();
            let params = layout.num_params();
            let x = layout.to_view(Tensor::<1>::random(
                [n],
                Distribution::Normal(0.5, 2.0),
                &device,
            ));
            let owner = values(
                layout
                    .broadcast(
                        Tensor::<1, burn::tensor::Int>::arange(0..params as i64, &device).float(),
                    )
                    .expand(x.dims()),
            );
            let (mut lo, mut hi, mut abs) = (
                vec![f32::INFINITY; params],
                vec![f32::NEG_INFINITY; params],
                vec![0f32; params],
            );
            for (v, p) in values(x.clone()).into_iter().zip(owner) {
                let p = p as usize;
                lo[p] = lo[p].min(v);
                hi[p] = hi[p].max(v);
                abs[p] = abs[p].max(v.abs());
            }
            let max_abs = values(quant::batch_max_abs(x.clone(), &layout));
            assert_close(name, "max |x|", &max_abs, &abs, 0.0, 0.0);
            let (min, max) = quant::batch_min_max(x, &layout);
            assert_close(name, "min", &values(min), &lo, 0.0, 0.0);
            assert_close(name, "max", &values(max), &hi, 0.0, 0.0);
        }
    }
}

/// The integer bias's rounding, [`quant::round_to_step_ste`] (one kernel on wgpu), against the
/// composite `round_ste(x / step) · step` on Flex: the same grid values with one step per tensor
/// and one per element, at odd sizes and at codes up to 2^24 (an int32 bias's range exceeds what
/// Flex's magic-number rounding keeps exact, 2^22), and the gradient passed straight through.
/// Steps are powers of two and inputs sit an exact eighth-multiple of a step off the grid (at
/// least 1/8 from a tie; on the grid past 2^20, where f32 keeps no fraction of a step), so every
/// value is exact and a code cannot flip on a driver's division.
#[test]
fn fused_round_to_step_equals_composite() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        for (n, per_element, largest_code) in [
            (1, false, 3),
            (7, false, 1000),
            (13, true, 1000),
            (1031, true, 1 << 20),
            (1031, false, 1 << 24),
        ] {
            let name = &format!(
                "{device_name}: {n} values, {} step, codes to {largest_code}",
                if per_element { "per-element" } else { "one" }
            );
            let steps: Vec<f32> = (0..if per_element { n } else { 1 })
                .map(|i| 2f32.powi(-10 + (i % 5) as i32))
                .collect();
            let x_host: Vec<f32> = (0..n)
                .map(|i| {
                    let step = steps[if per_element { i } else { 0 }];
                    let code = ((i as i64 * 7919) % (2 * largest_code + 1)) - largest_code;
                    let eighths = if largest_code > 1 << 20 {
                        0
                    } else {
                        (i as i64 * 37) % 7 - 3
                    };
                    (code as f32 + eighths as f32 / 8.0) * step
                })
                .collect();
            let x = Tensor::<1>::from_floats(x_host.as_slice(), &device).require_grad();
            let step = Tensor::<1>::from_floats(steps.as_slice(), &device);
            let y = quant::round_to_step_ste(x.clone(), step.clone());
            let x_ref = twin(&x);
            let reference = quant::round_ste(x_ref.clone() / twin(&step)) * twin(&step);
            assert_close(
                name,
                "y",
                &values(y.clone()),
                &values(reference.clone()),
                0.0,
                0.0,
            );
            let dy = Tensor::<1>::random([n], Distribution::Default, &device);
            let dx = values(x.grad(&(y * dy.clone()).sum().backward()).unwrap());
            let dx_ref = values(
                x_ref
                    .grad(&(reference * twin(&dy)).sum().backward())
                    .unwrap(),
            );
            assert_close(name, "dx = dy", &dx, &values(dy), 0.0, 0.0);
            assert_close(name, "dx", &dx, &dx_ref, 0.0, 0.0);
        }
    }
}

/// A per-tensor quantizer's view is the tensor itself (no copying reshape), so the kernels get
/// tensors in whatever layout they come: a channels-last activation (a convolution's output on a
/// GPU), and gradients channels-last or row-major. Fixed scale (values, mask, `dx`), LSQ (values,
/// `dx`, the scale gradient) and the observer's range, against the composite ops on Flex from
/// the same logical values; odd sizes, and one large enough for partial reductions.
#[test]
fn fused_kernels_take_channels_last_tensors() {
    let _serial = serial();
    for (device_name, device) in kernel_devices() {
        for [n, c, h, w] in [[2, 3, 5, 7], [4, 17, 9, 13]] {
            let channels_last = |distribution| {
                Tensor::<4>::random([n, h, w, c], distribution, &device).permute([0, 3, 1, 2])
            };
            let layout = ParamLayout::new(&[n, c, h, w], &Granularity::PerTensor);
            assert_eq!(
                layout.view,
                [n, c, h, w],
                "a per-tensor view keeps the shape"
            );
            for dy_channels_last in [false, true] {
                let name = &format!(
                    "{device_name}: channels-last [{n}, {c}, {h}, {w}], dy {}",
                    if dy_channels_last {
                        "channels-last"
                    } else {
                        "row-major"
                    }
                );
                let x = channels_last(Distribution::Normal(0.0, 2.0))
                    .detach()
                    .require_grad();
                let dy = if dy_channels_last {
                    channels_last(Distribution::Default)
                } else {
                    Tensor::<4>::random([n, c, h, w], Distribution::Default, &device)
                };

                // Fixed scale and zero point: clipped values, the mask in the backward pass.
                let scale = Tensor::<1>::from_floats([0.21], &device);
                let zp = Tensor::<1>::from_floats([3.0], &device);
                fixed_uint4_equals_composite(
                    &format!("{name} fixed"),
                    &x,
                    &layout,
                    (scale, zp),
                    dy.clone(),
                );

                // LSQ: the scale gradient reads `x` and `dy` element by element together.
                let x = x.detach().require_grad();
                let x_ref = twin(&x);
                let scale = Tensor::<1>::from_floats([0.3], &device).require_grad();
                let numel = n * c * h * w;
                let factor = lsq_grad_factor(numel, 7);
                let fused = fake_quantize_learnable_layout(
                    x.clone(),
                    &layout,
                    scale.clone(),
                    Tensor::<1>::zeros([1], &device),
                    (-8, 7),
                    factor,
                );
                let scale_ref = twin(&scale);
                let reference = fake_quantize_learnable_view(
                    x_ref.clone(),
                    layout.broadcast(grad_scale(scale_ref.clone(), factor)),
                    layout.broadcast(Tensor::<1>::zeros([1], &x_ref.device())),
                    -8,
                    7,
                );
                let [grads, grads_ref] = same_values_and_input_grad(
                    &format!("{name} lsq"),
                    (fused, &x),
                    (reference, &x_ref),
                    dy,
                    (GRAD_ATOL, 1e-5),
                );
                let ds = values(scale.grad(&grads).unwrap());
                let ds_ref = values(scale_ref.grad(&grads_ref).unwrap());
                let tol = 1e-5 * (numel as f32).sqrt();
                assert_close(&format!("{name} lsq"), "ds", &ds, &ds_ref, tol, 1e-4);

                // The observer's range of the channels-last tensor.
                let (min, max) = quant::batch_min_max(x.clone().detach(), &layout);
                let (min_ref, max_ref) = quant::batch_min_max(x_ref.detach(), &layout);
                assert_close(name, "min", &values(min), &values(min_ref), 0.0, 0.0);
                assert_close(name, "max", &values(max), &values(max_ref), 0.0, 0.0);
            }
        }
    }
}
