//! The Flex (CPU) implementations of [`FakeQuantKernels`]: one memory pass per kernel, loops
//! shaped so the compiler vectorises them, large tensors split across rayon's threads.
//!
//! Files: [`element`] (one element's arithmetic), [`parts`] (SIMD dispatch and rayon parts),
//! [`grid`] (grid constants, the elementwise and backward loops), [`range`] (per-parameter
//! ranges), [`mask`] (the one-bit clip mask), [`applied`] (what a kernel applies, from the
//! trait's arguments), [`tensors`] (Flex tensors in and out); this file maps
//! [`FakeQuantKernels`] onto them.

mod applied;
mod element;
mod grid;
mod mask;
mod parts;
mod range;
mod tensors;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};

use super::runs::Runs;
use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, SCALE_FLOOR, StepRule,
    lsq_fake_quant_then_round_bias, observe_fake_quant_then_round_bias, observe_then_fake_quant,
};
use applied::{applied_grid, prepare};
use element::code;
use grid::{Grid, zero_point_grad};
use mask::apply_bits;
use parts::{Kernel, NoElementFn, Out, split_work};
use range::range_per_param;
pub(crate) use tensors::contiguous;
use tensors::{f32s, flat, pick_rows, row_indices, writable};

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
        let (dq, bits) = grid.map_masked(&runs, xs);
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
        apply_bits(dx.storage_mut::<f32>(), bits);
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
