//! Learned step size (LSQ, Esser et al. 2019) and learned zero point (LSQ+, Bhalgat et al. 2020):
//! PyTorch's `torch._fake_quantize_learnable_per_tensor_affine` and
//! `torch._fake_quantize_learnable_per_channel_affine`.
//!
//! Forward as [`crate::fake_quantize_per_tensor_affine`] with `zp = clamp(round(zero_point))`.
//! Gradients, with `c = round(x/s) + zp` and grad factor `g` (LSQ: `1 / sqrt(N · qmax)`):
//! - `∂x̂/∂x = 1` inside `[qmin, qmax]`, else 0;
//! - `∂x̂/∂s = g · ((x̂ - x) / s)` inside, `g · (qmin - zp)` below, `g · (qmax - zp)` above;
//! - `∂x̂/∂zp = 0` inside, `-g · s` outside.
//!
//! Autodiff derives exactly these from `(clamp(round_ste(x · (1/s)) + zp, qmin, qmax) - zp) · s`,
//! rounding before adding the zero point as PyTorch does (adding first can move a value that sits
//! a rounding error from a half-way point to the other code).

use burn::tensor::{Int, Tensor};

use super::fused::{StepRule, fused_lsq, fused_lsq_bias, fused_lsq_rows};
use super::{StepSource, grad_scale, round_ste};
use crate::{Granularity, ParamLayout, QuantSpec, qparams_from_range};

/// The zero point an LSQ / LSQ+ quantizer applies: a given one (learned, or the observer's), or
/// that of an observed range `(min, max)` on `spec`'s grid, which the fused kernels compute
/// themselves (an LSQ quantizer on an affine grid applies its frozen observer's zero point; that
/// took an observer launch per step on a GPU).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one short-lived value per fake-quant call
pub(crate) enum ZeroPoint {
    Given(Tensor<1>),
    OfRange {
        min: Tensor<1>,
        max: Tensor<1>,
        spec: QuantSpec,
    },
}

impl ZeroPoint {
    /// What the fused LSQ kernels take: the given zero point alone, or a range's minima and
    /// maxima (whose zero point they compute).
    fn kernel_inputs(&self) -> (Tensor<1>, Option<Tensor<1>>) {
        match self {
            ZeroPoint::Given(zero_point) => (zero_point.clone(), None),
            ZeroPoint::OfRange { min, max, .. } => (min.clone(), Some(max.clone())),
        }
    }
}

/// LSQ/LSQ+ on a 4-D view; `scale` and `zero_point` broadcast against it and may be tracked.
pub fn fake_quantize_learnable_view(
    x: Tensor<4>,
    scale: Tensor<4>,
    zero_point: Tensor<4>,
    qmin: i32,
    qmax: i32,
) -> Tensor<4> {
    let (qmin, qmax) = (qmin as f64, qmax as f64);
    // Round and clamp the zero point in the forward pass, pass its gradient straight through.
    let zp_code = zero_point.clone().round().clamp(qmin, qmax);
    let zero_point = zero_point.clone() + (zp_code - zero_point).detach();
    let codes = (round_ste(x * scale.clone().recip()) + zero_point.clone()).clamp(qmin, qmax);
    (codes - zero_point) * scale
}

/// Fake quantization with a learnable `scale` and `zero_point` (`[n]`, laid out by a resolved
/// `granularity`) and gradient factor `grad_factor` on both.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let x = Tensor::<1>::from_floats([0.3, -0.9], &device);
/// let s = Tensor::<1>::from_floats([0.25], &device).require_grad();
/// let zp = Tensor::<1>::from_floats([0.0], &device).require_grad();
/// let y = quant::fake_quantize_learnable(x, s.clone(), zp, &quant::Granularity::PerTensor, -2, 1, 1.0);
/// assert_eq!(y.to_data().try_to_vec::<f32>().unwrap(), vec![0.25, -0.5]);
/// // d/ds: inside (0.25 - 0.3) / 0.25 = -0.2; below the grid qmin - zp = -2.
/// let g = s.grad(&y.sum().backward()).unwrap().into_scalar::<f32>();
/// assert!((g - (-2.2)).abs() < 1e-5);
/// ```
pub fn fake_quantize_learnable<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    granularity: &Granularity,
    qmin: i32,
    qmax: i32,
    grad_factor: f64,
) -> Tensor<D> {
    let shape = x.shape();
    let layout = ParamLayout::new(&shape.dims::<D>(), granularity);
    let view = layout.to_view(x);
    let y =
        fake_quantize_learnable_layout(view, &layout, scale, zero_point, (qmin, qmax), grad_factor);
    layout.from_view(y, shape)
}

/// LSQ/LSQ+ on a view laid out by `layout` with flat `[n]` (possibly tracked) parameters whose
/// gradients are multiplied by `grad_factor`: the fused kernel where available (which applies
/// the factor in its backward pass), [`fake_quantize_learnable_view`] elsewhere (same values and
/// gradients). The scale is used clamped to at least `SCALE_EPS` (and gets no gradient below
/// it), inside the kernels where they run.
pub fn fake_quantize_learnable_layout(
    x: Tensor<4>,
    layout: &ParamLayout,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    range: (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    learnable_layout(
        x,
        layout,
        (scale, None),
        ZeroPoint::Given(zero_point),
        range,
        grad_factor,
    )
}

/// [`fake_quantize_learnable_layout`] with the scale stored as `anchor + delta` (see
/// `crate::quantizer::LearnedValue`; `delta` learned, `anchor` set by observers): the fused
/// kernels add the two themselves, so the sum costs no launch of its own on a GPU (it was one
/// per learned quantizer per step).
pub(crate) fn fake_quantize_learned_layout(
    x: Tensor<4>,
    layout: &ParamLayout,
    (anchor, delta): (Tensor<1>, Tensor<1>),
    zero_point: ZeroPoint,
    range: (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    learnable_layout(
        x,
        layout,
        (delta, Some(anchor)),
        zero_point,
        range,
        grad_factor,
    )
}

/// [`fake_quantize_learned_layout`] of a layer's weight under a learned scale alone (its zero
/// point untracked), with the layer's `bias` rounded at the accumulator step `s_w · s_x` in the
/// same launch on a GPU (`weight_rule`: how the weight's step is made of `anchor` and `delta`;
/// `input`: the step of the quantizer that produced the layer's input): `(dq, rounded bias)`,
/// the bias's gradient straight through; or `None` where the fused kernels do not run (the
/// caller then quantizes the weight and rounds the bias on its own).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fake_quantize_learned_layout_with_bias(
    x: Tensor<4>,
    layout: &ParamLayout,
    (anchor, delta): (Tensor<1>, Tensor<1>),
    zero_point: ZeroPoint,
    range: (i32, i32),
    grad_factor: f64,
    bias: Tensor<1>,
    (weight_rule, input): (StepRule, &StepSource),
) -> Option<(Tensor<4>, Tensor<1>)> {
    fused_lsq_bias(
        &x,
        (anchor, delta),
        zero_point.kernel_inputs(),
        range,
        layout.is_per_group(),
        grad_factor,
        bias,
        (weight_rule, input),
    )
}

/// [`fake_quantize_learned_layout`] of rows `rows` looked up in a table (`x` their view, one
/// parameter per row) whose learned scale (`anchor + delta`) and untracked zero point are one per
/// table row: each row on its table row's grid, `delta`'s gradient summed over each row's
/// lookups. The fused kernels read the rows' parameters themselves (on a GPU that spares the
/// launch that picks them and, in the backward pass, the fill and the scatter of their
/// gradient); elsewhere the parameters are picked first.
pub(crate) fn fake_quantize_learned_rows(
    x: Tensor<4>,
    layout: &ParamLayout,
    (anchor, delta): (Tensor<1>, Tensor<1>),
    zero_point: ZeroPoint,
    rows: &Tensor<1, Int>,
    range: (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    let (given_or_min, range_max) = zero_point.kernel_inputs();
    if let Some(y) = fused_lsq_rows(
        &x,
        (delta.clone(), Some(anchor.clone())),
        (given_or_min, range_max),
        rows,
        range,
        grad_factor,
    ) {
        return y;
    }
    learned_rows_picked(
        x,
        layout,
        (anchor, delta),
        zero_point,
        rows,
        range,
        grad_factor,
    )
}

/// [`fake_quantize_learned_rows`] by picking the rows' parameters out of the table first, and
/// then [`fake_quantize_learned_layout`]: where the fused kernels do not run.
fn learned_rows_picked(
    x: Tensor<4>,
    layout: &ParamLayout,
    (anchor, delta): (Tensor<1>, Tensor<1>),
    zero_point: ZeroPoint,
    rows: &Tensor<1, Int>,
    range: (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    let pick = |t: Tensor<1>| t.select(0, rows.clone());
    let zero_point = match zero_point {
        ZeroPoint::Given(zero_point) => ZeroPoint::Given(pick(zero_point)),
        ZeroPoint::OfRange { min, max, spec } => ZeroPoint::OfRange {
            min: pick(min),
            max: pick(max),
            spec,
        },
    };
    fake_quantize_learned_layout(
        x,
        layout,
        (pick(anchor), pick(delta)),
        zero_point,
        range,
        grad_factor,
    )
}

/// LSQ/LSQ+ with the scale `offset + scale` (`scale` alone without an offset; the offset gets no
/// gradient): the fused kernel where it runs, the composite ops elsewhere.
fn learnable_layout(
    x: Tensor<4>,
    layout: &ParamLayout,
    (scale, offset): (Tensor<1>, Option<Tensor<1>>),
    zero_point: ZeroPoint,
    (qmin, qmax): (i32, i32),
    grad_factor: f64,
) -> Tensor<4> {
    let (given_or_min, range_max) = zero_point.kernel_inputs();
    if let Some(y) = fused_lsq(
        &x,
        scale.clone(),
        offset.clone(),
        given_or_min,
        range_max,
        (qmin, qmax),
        layout.is_per_group(),
        false,
        grad_factor,
    ) {
        return y;
    }
    let zero_point = match zero_point {
        ZeroPoint::Given(zero_point) => zero_point,
        ZeroPoint::OfRange { min, max, spec } => qparams_from_range(min, max, &spec).zero_point,
    };
    let scale = match offset {
        Some(offset) => offset + scale,
        None => scale,
    };
    let scale = grad_scale(scale, grad_factor).clamp_min(crate::SCALE_EPS);
    let zero_point = grad_scale(zero_point, grad_factor);
    fake_quantize_learnable_view(
        x,
        layout.broadcast(scale),
        layout.broadcast(zero_point),
        qmin,
        qmax,
    )
}

/// LSQ's gradient factor `1 / sqrt(N · qmax)` for `N` elements sharing one scale.
pub fn lsq_grad_factor(elems_per_scale: usize, qmax: i32) -> f64 {
    1.0 / ((elems_per_scale as f64) * (qmax.max(1) as f64)).sqrt()
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, IntDType};

    use super::*;
    use crate::testing::values;

    /// Asserts bit-equal values, naming the first element that differs.
    fn assert_same(name: &str, what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{name}: {what} length");
        if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
            panic!("{name}: {what}[{i}] = {} vs {}", a[i], b[i]);
        }
    }

    /// A learned scale passed as its stored parts (`anchor + delta`, added inside the kernels)
    /// gives exactly what the summed scale gives through [`fake_quantize_learnable_layout`]
    /// (pinned to the composite ops by `tests/fused_kernels.rs`): values, the input gradient and
    /// the scale gradient, which lands on `delta`; on Flex and on wgpu, per-tensor over more
    /// elements than one GPU cube reduces (partial sums), per-channel with one scale below the
    /// floor (no gradient there), affine zero points.
    #[test]
    fn scale_parts_added_in_the_kernels_equal_the_summed_scale() {
        let devices = crate::testing::kernel_devices();
        let cases = [
            ("per-tensor", vec![96, 130], Granularity::PerTensor),
            (
                "per-channel",
                vec![5, 33],
                Granularity::PerChannel { axis: Some(0) },
            ),
        ];
        for device in devices {
            for (name, shape, granularity) in &cases {
                let name = format!("{device:?}: {name}");
                let layout = ParamLayout::new(shape, granularity);
                let n = layout.num_params();
                let anchor: Vec<f32> = (0..n).map(|i| 0.05 + 0.03 * i as f32).collect();
                // The third channel's sum, 0.11 - 0.11 + 1e-9, sits below the floor.
                let delta: Vec<f32> = (0..n)
                    .map(|i| {
                        if i == 2 {
                            -0.11 + 1e-9
                        } else {
                            0.01 - 0.004 * i as f32
                        }
                    })
                    .collect();
                let t = |v: &[f32]| Tensor::<1>::from_floats(v, &device);
                let numel: usize = shape.iter().product();
                let x = layout
                    .to_view(Tensor::<1>::random(
                        [numel],
                        Distribution::Normal(0.0, 0.5),
                        &device,
                    ))
                    .detach()
                    .require_grad();
                let zp =
                    Tensor::<1>::random([n], Distribution::Uniform(-3.0, 3.0), &device).round();
                let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
                let factor = lsq_grad_factor(numel / n, 7);
                let (delta_parts, delta_sum) = (t(&delta).require_grad(), t(&delta).require_grad());
                let parts = fake_quantize_learned_layout(
                    x.clone(),
                    &layout,
                    (t(&anchor), delta_parts.clone()),
                    ZeroPoint::Given(zp.clone()),
                    (-8, 7),
                    factor,
                );
                let x_sum = x.clone().detach().require_grad();
                let summed = fake_quantize_learnable_layout(
                    x_sum.clone(),
                    &layout,
                    t(&anchor) + delta_sum.clone(),
                    zp,
                    (-8, 7),
                    factor,
                );
                assert_same(
                    &name,
                    "values",
                    &values(parts.clone()),
                    &values(summed.clone()),
                );
                let grads = (parts * dy.clone()).sum().backward();
                let grads_sum = (summed * dy).sum().backward();
                let dx = values(x.grad(&grads).unwrap());
                assert_same(&name, "dx", &dx, &values(x_sum.grad(&grads_sum).unwrap()));
                let ds = values(delta_parts.grad(&grads).unwrap());
                assert_same(
                    &name,
                    "ds",
                    &ds,
                    &values(delta_sum.grad(&grads_sum).unwrap()),
                );
                if n > 2 {
                    assert_eq!(ds[2], 0.0, "{name}: no gradient below the floor");
                    assert_ne!(ds[1], 0.0, "{name}: a gradient above it");
                }
            }
        }
    }

    /// An LSQ quantizer on an affine grid applies its frozen observer's zero point: passed as
    /// the observer's range ([`ZeroPoint::OfRange`], computed inside the kernels, no launch of its
    /// own on a GPU) it gives exactly what the zero point computed by `qparams_from_range` gives —
    /// values, the input gradient and the scale gradient, bit for bit; on Flex and wgpu, ranges
    /// across, above and below zero and one narrower than a step, per-tensor over more elements
    /// than one GPU cube reduces and per-channel, and with a frozen scale (no scale gradient: the
    /// fixed-scale path, which takes the zero point from the range by the observer kernel).
    #[test]
    fn zero_point_of_a_range_computed_in_the_kernels_equals_the_given_one() {
        let cases = [
            ("per-tensor", vec![96, 130], Granularity::PerTensor),
            (
                "per-channel",
                vec![5, 33],
                Granularity::PerChannel { axis: Some(0) },
            ),
        ];
        let ranges = [
            (-1.3f32, 2.7f32),
            (0.5, 4.0),
            (-3.0, -0.2),
            (-0.011, 0.9),
            (-1e-9, 2e-9),
        ];
        let spec = QuantSpec::new().with_bits(4).with_symmetric(false);
        let (qmin, qmax) = (spec.qmin(), spec.qmax());
        for device in crate::testing::kernel_devices() {
            for (name, shape, granularity) in &cases {
                for frozen in [false, true] {
                    let name = format!("{device:?}: {name}, frozen scale {frozen}");
                    let layout = ParamLayout::new(shape, granularity);
                    let n = layout.num_params();
                    let t = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device);
                    let (min, max) = (
                        t((0..n).map(|i| ranges[i % ranges.len()].0).collect()),
                        t((0..n).map(|i| ranges[i % ranges.len()].1).collect()),
                    );
                    let numel: usize = shape.iter().product();
                    let x = layout
                        .to_view(Tensor::<1>::random(
                            [numel],
                            Distribution::Normal(0.5, 1.5),
                            &device,
                        ))
                        .detach()
                        .require_grad();
                    let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
                    let anchor = t((0..n).map(|i| 0.1 + 0.02 * i as f32).collect());
                    let delta = || {
                        let delta = Tensor::<1>::zeros([n], &device);
                        if frozen { delta } else { delta.require_grad() }
                    };
                    let factor = lsq_grad_factor(numel / n, qmax);
                    let run = |zero_point: ZeroPoint| {
                        let (x, delta) = (x.clone().detach().require_grad(), delta());
                        let y = fake_quantize_learned_layout(
                            x.clone(),
                            &layout,
                            (anchor.clone(), delta.clone()),
                            zero_point,
                            (qmin, qmax),
                            factor,
                        );
                        let grads = (y.clone() * dy.clone()).sum().backward();
                        let ds = delta.grad(&grads).map(values);
                        (values(y), values(x.grad(&grads).unwrap()), ds)
                    };
                    let given = qparams_from_range(min.clone(), max.clone(), &spec).zero_point;
                    let (y_range, dx_range, ds_range) = run(ZeroPoint::OfRange {
                        min,
                        max,
                        spec: spec.clone(),
                    });
                    let (y_given, dx_given, ds_given) = run(ZeroPoint::Given(given));
                    assert_same(&name, "values", &y_range, &y_given);
                    assert_same(&name, "dx", &dx_range, &dx_given);
                    assert_eq!(ds_range.is_some(), !frozen, "{name}: scale gradient");
                    if let (Some(a), Some(b)) = (ds_range, ds_given) {
                        assert_same(&name, "ds", &a, &b);
                    }
                }
            }
        }
    }

    /// Rows looked up in a table, each read on its own table row's grid by the kernels
    /// ([`fake_quantize_learned_rows`]), equal picking the rows' parameters out of the table
    /// first (what runs without the kernels): values and the input gradient exactly, the table's
    /// scale gradient (summed over repeated rows, zero for rows not looked up) to summation
    /// order; symmetric and affine zero points given, the zero point of a frozen range, one
    /// scale below the floor, a frozen scale; rows of 12 and of 4,100 elements (more than a GPU
    /// reduction cube takes); 8 lookups and 600 (the GPU kernel that adds the lookups' gradients
    /// into the table's takes them 256 at a time); on Flex and on wgpu; row ids as `i32` and as
    /// `i64` (cast for the GPU kernels).
    #[test]
    fn rows_read_in_the_table_equal_the_picked_rows() {
        let spec = QuantSpec::new().with_bits(4).with_symmetric(false);
        let (qmin, qmax) = (spec.qmin(), spec.qmax());
        let table_rows = 40;
        let few = vec![3i64, 7, 3, 39, 0, 7, 7, 12];
        // Rows 0..37 in a scrambled order, each several times; 37..40 never.
        let many: Vec<i64> = (0..600).map(|i| (i * 7919 % 37) as i64).collect();
        for device in crate::testing::kernel_devices() {
            for (ids, row_len) in [(&few, 12), (&few, 4100), (&many, 12)] {
                let shape = [ids.len(), row_len];
                let layout = ParamLayout::new(&shape, &Granularity::PerChannel { axis: Some(0) });
                let t = |v: Vec<f32>| Tensor::<1>::from_floats(v.as_slice(), &device);
                let rows = Tensor::<1, Int>::from_data(
                    burn::tensor::TensorData::new(ids.clone(), [ids.len()]),
                    &device,
                )
                .cast(IntDType::I32);
                let rows_i64 = rows.clone().cast(IntDType::I64);
                let anchor = t((0..table_rows).map(|r| 0.05 + 0.01 * r as f32).collect());
                // Row 7's scale, 0.12 - 0.12 + 1e-9, sits below the floor: no gradient there.
                let delta_values: Vec<f32> = (0..table_rows)
                    .map(|r| {
                        if r == 7 {
                            -0.12 + 1e-9
                        } else {
                            0.002 * r as f32
                        }
                    })
                    .collect();
                let (min, max) = (
                    t((0..table_rows).map(|r| -0.5 - 0.1 * r as f32).collect()),
                    t((0..table_rows).map(|r| 0.3 + 0.05 * r as f32).collect()),
                );
                let zero_points = [
                    ("symmetric", ZeroPoint::Given(t(vec![0.0; table_rows]))),
                    (
                        "affine",
                        ZeroPoint::Given(t((0..table_rows)
                            .map(|r| (r % 5) as f32 - 2.0)
                            .collect())),
                    ),
                    (
                        "of a range",
                        ZeroPoint::OfRange {
                            min,
                            max,
                            spec: spec.clone(),
                        },
                    ),
                ];
                let x = layout.to_view(Tensor::<2>::random(
                    shape,
                    Distribution::Normal(0.0, 0.6),
                    &device,
                ));
                let dy = Tensor::<4>::random(x.dims(), Distribution::Default, &device);
                let factor = lsq_grad_factor(row_len, qmax);
                for (zp_name, zero_point) in &zero_points {
                    for frozen in [false, true] {
                        let name = format!(
                            "{device:?}: {} lookups of {row_len}, {zp_name}, frozen {frozen}",
                            ids.len()
                        );
                        let run = |by_kernels: bool, rows: &Tensor<1, Int>| {
                            let x = x.clone().detach().require_grad();
                            let delta = t(delta_values.clone());
                            let delta = if frozen { delta } else { delta.require_grad() };
                            let parts = (anchor.clone(), delta.clone());
                            let zp = zero_point.clone();
                            let range = (qmin, qmax);
                            let y = if by_kernels {
                                fake_quantize_learned_rows(
                                    x.clone(),
                                    &layout,
                                    parts,
                                    zp,
                                    rows,
                                    range,
                                    factor,
                                )
                            } else {
                                learned_rows_picked(
                                    x.clone(),
                                    &layout,
                                    parts,
                                    zp,
                                    rows,
                                    range,
                                    factor,
                                )
                            };
                            let grads = (y.clone() * dy.clone()).sum().backward();
                            let ds = delta.grad(&grads).map(values);
                            (values(y), values(x.grad(&grads).unwrap()), ds)
                        };
                        let (y_kernels, dx_kernels, ds_kernels) = run(true, &rows);
                        let (y_picked, dx_picked, ds_picked) = run(false, &rows);
                        let (y_i64, dx_i64, ds_i64) = run(true, &rows_i64);
                        assert_same(&name, "values with i64 ids", &y_i64, &y_kernels);
                        assert_same(&name, "dx with i64 ids", &dx_i64, &dx_kernels);
                        assert_eq!(ds_i64, ds_kernels, "{name}: ds with i64 ids");
                        assert_same(&name, "values", &y_kernels, &y_picked);
                        assert_same(&name, "dx", &dx_kernels, &dx_picked);
                        assert_eq!(ds_kernels.is_some(), !frozen, "{name}: scale gradient");
                        if let (Some(a), Some(b)) = (ds_kernels, ds_picked) {
                            assert_eq!(a.len(), table_rows, "{name}: one gradient per table row");
                            for (r, (a, b)) in a.iter().zip(&b).enumerate() {
                                let looked_up = ids.contains(&(r as i64));
                                assert!(
                                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                                    "{name}: ds[{r}] = {a} vs {b}"
                                );
                                assert_eq!(
                                    *a != 0.0,
                                    looked_up && r != 7,
                                    "{name}: ds[{r}] = {a}, looked up {looked_up}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
