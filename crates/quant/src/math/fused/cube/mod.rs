//! The CubeCL (wgpu / Vulkan / Metal / CUDA) implementation of [`FakeQuantKernels`]: one launch
//! per fake-quant forward, one per backward (plus one to add up the scale gradient's partial sums
//! when a parameter has more elements than a cube takes), one or two per observer reduction, one
//! for an observer update with the fake quantization it feeds when each parameter fits a cube
//! and no clip mask is kept (a weight's output channels), and two for it at any size otherwise
//! (an activation): the reduction cubes fold their ranges into each parameter's range by atomic
//! min / max on order-preserving `u32` keys, then one kernel updates the observer from them and
//! fake-quantizes, keeping the clip mask.
//!
//! Burn's `Cube` backend is `Fusion<CubeBackend>`: the extension macro wraps these launches as
//! opaque operations of the fusion stream, so the composite ops around them still fuse.
//!
//! Files: [`kernels`] (the `#[cube]` kernels), [`layout`] (a view's parameters, launch grids),
//! [`tensors`] (inputs and outputs of a launch), [`grid`] (the fake-quant kernels' grid
//! arguments), [`mod@reduce`] (per-parameter reductions), [`fake_quant`] (the elementwise
//! launches), [`bias`] (a bias rounded in the weight's launch), [`observe`] (the observer
//! launches), [`lsq`] (LSQ's backward launches); this file maps [`FakeQuantKernels`] onto them.

mod bias;
mod fake_quant;
mod grid;
mod kernels;
mod layout;
mod lsq;
mod observe;
mod reduce;
mod tensors;

use burn::backend::DType;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use super::{
    FakeQuantKernels, LsqBiasGrid, ObserveRule, Observed, Range, StepRule,
    lsq_fake_quant_then_round_bias, observe_fake_quant_then_round_bias, observe_then_fake_quant,
};
use bias::{BiasFold, launch_round_to_step_product};
use fake_quant::{
    launch_apply_mask, launch_fake_quant, launch_fake_quant_with, launch_fake_quant_with_mask,
    launch_masked_grad,
};
use grid::Grid;
use kernels::{MAX_ABS, MIN_MAX, SUM, SUM_BOTH};
use layout::{REDUCE_CHUNK, ViewLayout};
use lsq::{launch_add_into_table_rows, launch_lsq_backward};
use observe::{has_atomic_min_max, launch_observe, launch_observe_by_keys};
use reduce::{reduce_per_param, reduce_until, reduce_until_with};
use tensors::{empty, empty_like, f32_elements};

impl FakeQuantKernels for CubeBackend {
    fn max_abs_per_param(
        x: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> CubeTensor {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, num_params);
        reduce_per_param(x, layout, MAX_ABS).1
    }

    fn min_max_per_param(
        x: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        num_params: usize,
    ) -> (CubeTensor, CubeTensor) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, num_params);
        reduce_per_param(x, layout, MIN_MAX)
    }

    fn observe_range(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
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
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        // Large parameters are first cut down to partial ranges; the observe kernel folds what
        // is left (at most one chunk per parameter) and writes the results.
        let op = if symmetric { MAX_ABS } else { MIN_MAX };
        let (low, high, layout) = reduce_until(x, layout, op, REDUCE_CHUNK, false);
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        launch_observe((low, high), (min, max), layout, rule, None, None).0
    }

    fn observe_fake_quant(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
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
    ) -> (Range<Self>, (CubeTensor, CubeTensor)) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        let rule =
            ObserveRule::from_args(symmetric, averaging, qmin, qmax, symmetric_zero_point, eps);
        if !keep_mask && layout.per_param <= REDUCE_CHUNK {
            // Each parameter fits one cube, which observes and fake-quantizes it: one launch.
            let dequantized = empty_like(&x);
            let ((range, _qparams), _) = launch_observe(
                (x.clone(), x.clone()),
                (min, max),
                layout,
                rule,
                Some(dequantized.clone()),
                None,
            );
            return (range, (dequantized, empty(&x, [0], DType::U32)));
        }
        if !has_atomic_min_max(&x) {
            return observe_then_fake_quant::<Self>(
                x,
                (min, max),
                view,
                per_group,
                n,
                rule,
                keep_mask,
            );
        }
        launch_observe_by_keys(x, (min, max), layout, rule, keep_mask)
    }

    fn observe_fake_quant_bias(
        x: CubeTensor,
        min: CubeTensor,
        max: CubeTensor,
        bias: CubeTensor,
        input_low: CubeTensor,
        input_high: CubeTensor,
        view: [usize; 4],
        per_group: bool,
        n: usize,
        rule: ObserveRule,
        input_rule: StepRule,
        limit: f32,
    ) -> (Range<Self>, (CubeTensor, CubeTensor)) {
        let x = f32_elements(x, "the observed tensor");
        let layout = ViewLayout::new(view, per_group, n);
        let bias_len = bias.meta.shape().num_elements();
        if layout.per_param > REDUCE_CHUNK || (n != 1 && n != bias_len) {
            return observe_fake_quant_then_round_bias::<Self>(
                x,
                (min, max),
                bias,
                (input_low, input_high),
                (view, per_group, n),
                rule,
                input_rule,
                limit,
            );
        }
        // Each parameter fits one cube, which observes and fake-quantizes it and rounds its
        // channel's bias: one launch.
        let dequantized = empty_like(&x);
        let fold = BiasFold::new(
            bias,
            (input_low, input_high),
            (rule.step_rule(), input_rule),
            limit,
        );
        let ((range, _qparams), rounded) = launch_observe(
            (x.clone(), x),
            (min, max),
            layout,
            rule,
            Some(dequantized.clone()),
            Some(fold),
        );
        let rounded = rounded.expect("the observer kernel rounds the bias it is given");
        (range, (dequantized, rounded))
    }

    fn fake_quant_backward(
        grad: CubeTensor,
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        with_scale_grad: bool,
        with_zero_point_grad: bool,
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> ((CubeTensor, CubeTensor), CubeTensor) {
        let grad = f32_elements(grad, "the gradient");
        let x = f32_elements(x, "the input");
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range);
        let layout = ViewLayout::new(view, per_group, grid.num_params());
        let nothing = || empty(&x, [0], DType::F32);
        if !with_scale_grad && !with_zero_point_grad {
            // A learned scale always asks for a gradient (the autodiff op keeps the input only
            // then), so an offset or a range's zero point never reaches this fixed-scale kernel.
            debug_assert!(!with_offset, "masked_grad reads no scale offset");
            debug_assert!(
                !zero_point_from_range,
                "masked_grad reads a given zero point"
            );
            let dx = launch_masked_grad(grad, x.clone(), grid, layout);
            return ((dx, nothing()), nothing());
        }
        let (dx, ds, dzp, chunks) = launch_lsq_backward(
            grad,
            x.clone(),
            &grid,
            layout,
            with_zero_point_grad,
            grad_factor,
        );
        // Partial sums per (parameter, chunk): add them up, both gradients in one launch.
        let (ds, dzp) = if chunks == 1 {
            (ds, dzp)
        } else {
            let partials = ViewLayout::partials(layout.num_params, chunks);
            let op = if with_zero_point_grad { SUM_BOTH } else { SUM };
            let (low, high, _) = reduce_until_with(dzp, ds, partials, op, 1, true);
            (high, low)
        };
        let ds = if with_scale_grad { ds } else { nothing() };
        let dzp = if with_zero_point_grad { dzp } else { nothing() };
        ((dx, ds), dzp)
    }

    fn fake_quant_with_mask(
        x: CubeTensor,
        scale: CubeTensor,
        zero_point: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
    ) -> (CubeTensor, CubeTensor) {
        let grid = Grid::new(scale, zero_point, qmin, qmax);
        launch_fake_quant_with_mask(x, grid, view, per_group)
    }

    fn apply_mask(grad: CubeTensor, mask: CubeTensor) -> CubeTensor {
        launch_apply_mask(grad, mask)
    }

    fn lsq_fake_quant(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        per_group: bool,
        _clip_free: bool,
        _grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> CubeTensor {
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range);
        launch_fake_quant(x, grid, view, per_group)
    }

    fn lsq_fake_quant_bias(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        bias: CubeTensor,
        input_low: CubeTensor,
        input_high: CubeTensor,
        grid: LsqBiasGrid,
    ) -> (CubeTensor, CubeTensor) {
        let bias_len = bias.meta.shape().num_elements();
        let n = scale.meta.shape().num_elements();
        let elements: usize = grid.view.iter().product();
        if bias_len > elements || (n != 1 && n != bias_len) {
            return lsq_fake_quant_then_round_bias::<Self>(
                x,
                (scale, scale_offset),
                (zero_point, zero_point_high),
                bias,
                (input_low, input_high),
                grid,
            );
        }
        let (qmin, qmax) = grid.range;
        let weight = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, true)
            .with_zero_point_range(zero_point_high, grid.zero_point_from_range);
        let fold = BiasFold::new(bias, (input_low, input_high), grid.rules, grid.limit);
        let (dequantized, rounded) =
            launch_fake_quant_with(x, weight, grid.view, grid.per_group, Some(fold));
        let rounded = rounded.expect("the fake-quant kernel rounds the bias it is given");
        (dequantized, rounded)
    }

    fn lsq_fake_quant_rows(
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        rows: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        _grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> CubeTensor {
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range)
            .with_rows(rows);
        launch_fake_quant(x, grid, view, false)
    }

    fn lsq_backward_rows(
        grad: CubeTensor,
        x: CubeTensor,
        scale: CubeTensor,
        scale_offset: CubeTensor,
        zero_point: CubeTensor,
        zero_point_high: CubeTensor,
        rows: CubeTensor,
        qmin: f32,
        qmax: f32,
        view: [usize; 4],
        grad_factor: f32,
        with_offset: bool,
        zero_point_from_range: bool,
    ) -> (CubeTensor, CubeTensor) {
        let grad = f32_elements(grad, "the gradient");
        let x = f32_elements(x, "the input");
        let table_rows = scale.meta.shape().num_elements();
        let grid = Grid::new(scale, zero_point, qmin, qmax)
            .with_offset(scale_offset, with_offset)
            .with_zero_point_range(zero_point_high, zero_point_from_range)
            .with_rows(rows);
        let layout = ViewLayout::new(view, false, grid.num_params());
        let (dx, partials, _, chunks) =
            launch_lsq_backward(grad, x, &grid, layout, false, grad_factor);
        let rows = grid.rows.expect("a grid of rows");
        let ds = launch_add_into_table_rows(partials, rows, layout.num_params, chunks, table_rows);
        (dx, ds)
    }

    fn round_to_step_product(
        x: CubeTensor,
        a_low: CubeTensor,
        a_high: CubeTensor,
        b_low: CubeTensor,
        b_high: CubeTensor,
        a_rule: StepRule,
        b_rule: StepRule,
        limit: f32,
    ) -> CubeTensor {
        launch_round_to_step_product(x, [a_low, a_high, b_low, b_high], (a_rule, b_rule), limit)
    }
}
