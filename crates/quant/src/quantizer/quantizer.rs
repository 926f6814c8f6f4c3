//! [`Quantizer`]: one tensor's fake quantization with its observer, learned parameters and switches.
//!
//! The same module quantizes activations (called as [`FakeQuant`]) and weights (attached to a
//! `Param` as a Burn [`Reparameterization`], so stock `burn::nn` layers see fake-quantized weights).
//!
//! Switches are `Param<Flag>`s, so whole-model passes ([`crate::control`]) can flip them by path:
//! - `observer_enabled`: update the observer on each forward (off after `valid()`, so
//!   validation never changes statistics);
//! - `bypass`: skip fake quantization; `valid()` clears it, so validation always quantizes;
//! - `training`: count steps for the quant delay (like `BatchNorm`'s flag).
//!
//! Two facts read from saved state are cached on the host so that a step does not wait for the
//! device (observer initialised, quant delay over); the caches are [`Latch`]es, which a clone does
//! not share, so a copy of a model (and a model a record was loaded into through a clone) reads its
//! own state again.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{Flag, Module, Param, Reparameterization, RunningState};
use burn::tensor::{Device, Int, Tensor};

use super::{LearnedValue, Learning, QuantizerConfig};
use crate::kernels::fake_quantize_layout;
use crate::math::StepSource;
use crate::math::{
    ZeroPoint, fake_quantize_learned_layout, fake_quantize_learned_layout_with_bias,
    fake_quantize_learned_rows,
};
use crate::{
    Granularity, Observer, ObserverKind, ParamLayout, QParams, SCALE_EPS, batch_max_abs,
    batch_min_max, lsq_grad_factor, no_grad, pact_view, qparams_from_range,
};

/// Tables of at most this many elements (1 MiB of `f32`) are fake-quantized whole before an
/// embedding lookup ([`Quantizer::forward_rows`]), whatever the lookup. On a GPU a pass over
/// 1 MiB costs about a microsecond, less than the launches the row path adds; on the CPU it is a
/// fraction of a millisecond. MiniLM's 512 × 384 position table is one, BERT-base's 512 × 768
/// is not.
pub const WHOLE_TABLE_ELEMENTS: usize = 1 << 18;

/// The activation fake-quantizer: a [`Quantizer`] placed in a model's `forward`.
pub type FakeQuant = Quantizer;

/// Fake quantization of one tensor, with its state.
#[derive(Module, Debug)]
pub struct Quantizer {
    /// Range statistics; the source of fixed scales and the initialiser of learned ones.
    pub observer: Observer,
    /// LSQ step size, or PACT clip value.
    pub learned_scale: Option<LearnedValue>,
    /// LSQ+ zero point.
    pub learned_zero_point: Option<LearnedValue>,
    /// Training steps counted while the quant delay lasts (saved, so a resumed run keeps its place).
    pub steps: RunningState<Tensor<1>>,
    /// The stored grid, `[bits, signed, symmetric, dynamic]` (booleans as 0/1): saved with the
    /// model so that whole-model passes ([`crate::qat::storage_bytes`]) can size it.
    pub grid: RunningState<Tensor<1>>,
    /// Update the observer on each forward.
    pub observer_enabled: Param<Flag>,
    /// Pass values through unquantized (cleared by `valid()`).
    pub bypass: Param<Flag>,
    /// Training mode (cleared by `valid()`), for the quant-delay counter.
    pub training: Param<Flag>,
    /// The resolved configuration (granularity axis fixed).
    #[module(skip)]
    pub config: QuantizerConfig,
    /// Whether this quantizes an activation (axes counted from the back, traced by
    /// [`crate::program`]) rather than a weight.
    pub activation: bool,
    #[module(skip)]
    delay_over: Latch,
    #[module(skip)]
    initialized: Latch,
}

/// A host-side cache of a fact that only ever turns true; a clone starts unknown (`false`), so
/// it re-reads the state it caches instead of sharing another module's answer.
#[derive(Debug, Default)]
struct Latch(AtomicBool);

impl Latch {
    fn new(value: bool) -> Self {
        Latch(AtomicBool::new(value))
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, value: bool) {
        self.0.store(value, Ordering::Relaxed)
    }
}

impl Clone for Latch {
    fn clone(&self) -> Self {
        Latch::default()
    }
}

impl Quantizer {
    /// A quantizer with `num_params` scales; prefer [`QuantizerConfig::init`], which validates.
    pub fn new(config: QuantizerConfig, num_params: usize, device: &Device) -> Self {
        let learned = |initial: f32| LearnedValue::new(initial, num_params, device);
        let learned_scale = match config.learning {
            Learning::Fixed => None,
            Learning::Lsq | Learning::LsqPlus | Learning::Pact => Some(learned(1.0)),
        };
        let learned_zero_point = match config.learning {
            Learning::LsqPlus => Some(learned(config.spec.symmetric_zero_point() as f32)),
            _ => None,
        };
        Self {
            observer: Observer::new(config.observer.clone(), num_params, device),
            learned_scale,
            learned_zero_point,
            steps: RunningState::new(Tensor::zeros([1], device)),
            grid: RunningState::new(Tensor::from_floats(
                [
                    config.spec.bits as f32,
                    config.spec.signed as u8 as f32,
                    config.spec.symmetric as u8 as f32,
                    (config.spec.granularity == Granularity::PerToken) as u8 as f32,
                ],
                device,
            )),
            observer_enabled: Param::from_bool(true),
            bypass: Param::from_bool(false),
            training: Param::from_bool(true),
            activation: false,
            delay_over: Latch::new(config.quant_delay == 0),
            initialized: Latch::default(),
            config,
        }
    }

    /// Fake-quantizes `x`, observing it first when the observer is enabled.
    ///
    /// Fixed quantizers observe every batch. Learned ones (LSQ, LSQ+, PACT) observe only to
    /// initialise: before their first observation, during the quant delay, or while bypassed
    /// (calibration); afterwards their parameters move by gradient alone.
    ///
    /// # Panics
    /// If `x` does not have the channel count or group divisibility the quantizer was built for.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if !self.activation || !crate::program::tracing() {
            return self.fake_quantize(x);
        }
        let input = x.clone();
        let output = self.fake_quantize(x);
        crate::program::record_quantizer(self, &input, &output);
        output
    }

    fn fake_quantize<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.fake_quantize_folding(x, None).0
    }

    /// [`Self::fake_quantize`], which with `bias` (a layer's bias and its input quantizer's
    /// step) also rounds the bias at `s_w · s_x` where the weight's fused launch can (an
    /// observed clip-free weight's observer kernel, an LSQ weight's fake-quant kernel): the
    /// rounded bias then, `None` otherwise.
    fn fake_quantize_folding<const D: usize>(
        &self,
        x: Tensor<D>,
        bias: Option<(Tensor<1>, &StepSource)>,
    ) -> (Tensor<D>, Option<Tensor<1>>) {
        if self.config.spec.granularity == Granularity::PerToken {
            return (self.fake_quantize_dynamic(x), None);
        }
        let (observe, quantize) = self.plan(x.device().is_autodiff());
        if !observe && !quantize {
            return (x, None);
        }
        let shape = x.shape();
        let layout = self.layout(&shape.dims::<D>());
        let view = layout.to_view(x);
        if observe && quantize && self.config.learning == Learning::Fixed {
            // Observed and quantized in one fused op where it runs (on a GPU one launch for a
            // clip-free weight whose output channels each fit a cube, otherwise two whatever the
            // size, the clip mask kept for the backward where the new range may clip).
            let spec = &self.config.spec;
            let clip_free = self.clip_free();
            match &bias {
                // A clip-free weight's launch rounds its layer's bias too.
                Some((bias, input)) if clip_free => {
                    if let Some((y, rounded)) = self.observer.observe_and_fake_quantize_with_bias(
                        &view,
                        &layout,
                        spec,
                        bias.clone(),
                        input,
                    ) {
                        return (layout.from_view(y, shape), Some(rounded));
                    }
                }
                _ => {
                    if let Some(y) = self
                        .observer
                        .observe_and_fake_quantize(&view, &layout, spec, clip_free)
                    {
                        return (layout.from_view(y, shape), None);
                    }
                }
            }
        }
        let observed = if observe {
            self.observe_view(view.clone(), &layout)
        } else {
            None
        };
        if !quantize {
            return (layout.from_view(view, shape), None);
        }
        if let Some((bias, input)) = bias
            && let Some((y, rounded)) =
                self.fake_quantize_learned_with_bias(&view, &layout, observed.clone(), bias, input)
        {
            return (layout.from_view(y, shape), Some(rounded));
        }
        let y = self.fake_quantize_view(view, &layout, observe, None, observed);
        (layout.from_view(y, shape), None)
    }

    /// The LSQ fake quantization of [`Self::fake_quantize_view`] (a learned scale alone, no rows)
    /// with the layer's `bias` rounded at `s_w · s_x` in its launch where the fused kernels run
    /// (`input`: the input quantizer's step): `(dq, rounded bias)`, or `None` for any other
    /// quantizer or device.
    fn fake_quantize_learned_with_bias(
        &self,
        view: &Tensor<4>,
        layout: &ParamLayout,
        observed: Option<QParams>,
        bias: Tensor<1>,
        input: &StepSource,
    ) -> Option<(Tensor<4>, Tensor<1>)> {
        if self.config.learning != Learning::Lsq || self.learned_zero_point.is_some() {
            return None;
        }
        let spec = &self.config.spec;
        let (factor, anchor, delta) = self.lsq_scale_parts(layout);
        let zero_point = self.unlearned_zero_point(layout.num_params(), observed, &view.device());
        // The step the rounding kernel would read: `step_source`'s for LSQ.
        let weight = StepSource::learned(anchor.clone(), delta.clone(), 1.0).rule;
        fake_quantize_learned_layout_with_bias(
            view.clone(),
            layout,
            (anchor, delta),
            zero_point,
            (spec.qmin(), spec.qmax()),
            factor,
            bias,
            (weight, input),
        )
    }

    /// LSQ's gradient factor for `layout` and the learned scale's stored parts `(anchor, delta)`.
    fn lsq_scale_parts(&self, layout: &ParamLayout) -> (f64, Tensor<1>, Tensor<1>) {
        let factor = lsq_grad_factor(layout.elems_per_param(), self.config.spec.qmax());
        let learned = self.learned_scale_param();
        (factor, learned.anchor.value_sync(), learned.delta.val())
    }

    /// What one call does under the switches: `(observe first, fake-quantize)`. Fixed
    /// quantizers observe every batch; learned ones only to initialise (see [`Self::forward`]).
    fn plan(&self, on_autodiff: bool) -> (bool, bool) {
        let bypass = self.bypass.is_enabled();
        let training = on_autodiff && self.training.is_enabled();
        let delaying = training && !bypass && self.in_quant_delay();
        let observe = self.observer_enabled.is_enabled()
            && (self.config.learning == Learning::Fixed
                || delaying
                || bypass
                || !self.learned_initialized());
        (observe, !bypass && !delaying)
    }

    /// Rows `rows` of this quantizer's fake-quantized `table`: the values and gradients of
    /// `self.forward_weight(table).select(0, rows)`, but only the looked-up rows are
    /// fake-quantized (an embedding lookup touches `batch × seq` of its 30,522 rows). The observer
    /// still sees the whole table. Per-row and per-tensor quantizers take this path; others
    /// quantize the table first, and so does any quantizer of a small table (see
    /// [`WHOLE_TABLE_ELEMENTS`]) or of one with no more rows than the lookup (BERT's two-row
    /// token-type table): there the whole table is no more work than the looked-up rows, or
    /// little enough, and it spares a GPU the launches of the row path (the observer's own pass
    /// and the pick of the rows' fixed grids: 2 more than quantizing the table, 1 more under a
    /// learned scale).
    pub fn forward_rows(&self, table: Tensor<2>, rows: Tensor<1, Int>) -> Tensor<2> {
        let [table_rows, row_len] = table.dims();
        if table_rows <= rows.dims()[0] || table_rows * row_len <= WHOLE_TABLE_ELEMENTS {
            return self.fake_quantize(table).select(0, rows);
        }
        let per_row = match self.config.spec.granularity {
            Granularity::PerChannel {
                axis: None | Some(0),
            } => true,
            Granularity::PerTensor => false,
            _ => return self.fake_quantize(table).select(0, rows),
        };
        if self.activation || self.config.learning == Learning::Pact {
            return self.fake_quantize(table).select(0, rows);
        }
        let (observe, quantize) = self.plan(table.device().is_autodiff());
        // The fused observer's qparams of the whole table, passed on so that they are not
        // recomputed from its range (composite ops, a dozen launches on a GPU).
        let observed = if observe {
            let layout = self.layout(&table.dims());
            self.observe_view(layout.to_view(table.clone()), &layout)
        } else {
            None
        };
        let picked = table.select(0, rows.clone());
        if !quantize {
            return picked;
        }
        let shape = picked.shape();
        let layout = self.layout(&shape.dims::<2>());
        let view = layout.to_view(picked);
        let rows = per_row.then_some(&rows);
        layout.from_view(
            self.fake_quantize_view(view, &layout, observe, rows, observed),
            shape,
        )
    }

    /// Fake-quantizes a weight (or any tensor outside the traced integer program), observing it
    /// first when the observer is enabled.
    pub fn forward_weight<const D: usize>(&self, w: Tensor<D>) -> Tensor<D> {
        self.fake_quantize(w)
    }

    /// [`Self::forward_weight`] of a layer's weight that also rounds the layer's `bias` at the
    /// accumulator step `s_w · s_x` (`input`: the step of the quantizer that produced the
    /// layer's input) where the weight's fused kernel can, in its launch (on a GPU one launch
    /// where the two took two): the rounded bias then, with a straight-through gradient;
    /// `None` otherwise, for the caller to round it (`crate::layers`).
    pub(crate) fn forward_weight_with_bias<const D: usize>(
        &self,
        w: Tensor<D>,
        bias: Tensor<1>,
        input: &StepSource,
    ) -> (Tensor<D>, Option<Tensor<1>>) {
        self.fake_quantize_folding(w, Some((bias, input)))
    }

    /// Per-token quantization: scales from this very tensor, one per row, nothing stored.
    fn fake_quantize_dynamic<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.bypass.is_enabled() {
            return x;
        }
        let spec = &self.config.spec;
        let shape = x.shape();
        let layout = self.layout(&shape.dims::<D>());
        let view = layout.to_view(x);
        let qp = self.dynamic_qparams(&view, &layout);
        let zero_point = (!spec.symmetric || !spec.signed).then_some(qp.zero_point);
        let clip_free = spec.symmetric && spec.signed && spec.narrow_range;
        let y = fake_quantize_layout(
            view,
            &layout,
            qp.scale,
            zero_point,
            (spec.qmin(), spec.qmax()),
            !clip_free,
        );
        layout.from_view(y, shape)
    }

    /// The qparams of `view`'s own per-row ranges: one fused kernel where it runs (the range
    /// and the qparams in one launch on a GPU), composite ops elsewhere.
    fn dynamic_qparams(&self, view: &Tensor<4>, layout: &ParamLayout) -> QParams {
        let spec = &self.config.spec;
        let rule = crate::math::ObserveRule::for_spec(spec, 1.0);
        let view = no_grad(view.clone());
        let fused = crate::math::fused_observe(
            &view,
            None,
            layout.is_per_group(),
            layout.num_params(),
            rule,
        );
        if let Some([_, _, scale, zero_point]) = fused {
            return QParams { scale, zero_point };
        }
        let (min, max) = if spec.symmetric {
            let bound = batch_max_abs(view.clone(), layout);
            (bound.clone().neg(), bound)
        } else {
            batch_min_max(view, layout)
        };
        qparams_from_range(min, max, spec)
    }

    /// Whether this quantizer's grid is in force: not bypassed, past its quant delay (when
    /// training on an autodiff device), and its observer has seen data. Layers quantize their
    /// bias at `s_x · s_w` only then (see `QuantLinear::forward_from`).
    pub fn grid_ready(&self, on_autodiff: bool) -> bool {
        let delaying = on_autodiff
            && self.training.is_enabled()
            && self.config.quant_delay > 0
            && !self.delay_over.get();
        !self.bypass.is_enabled() && !delaying && !self.is_dynamic() && self.learned_initialized()
    }

    /// Whether this quantizer computes its scales from each tensor (per-token) instead of keeping them.
    pub fn is_dynamic(&self) -> bool {
        self.config.spec.granularity == Granularity::PerToken
    }

    /// Folds `x` into the observer (and rebases learned parameters onto it), whatever the switches.
    pub fn observe<const D: usize>(&self, x: Tensor<D>) {
        if self.is_dynamic() {
            return;
        }
        let layout = self.layout(&x.shape().dims::<D>());
        let _ = self.observe_view(layout.to_view(x), &layout);
    }

    /// The quantization parameters this quantizer applies now, `[n]` each, without gradients.
    /// For PACT, `scale` is the grid step `α / levels`.
    pub fn qparams(&self) -> QParams {
        let spec = &self.config.spec;
        let observed = self.observer.qparams(spec);
        match self.config.learning {
            Learning::Fixed => observed,
            Learning::Lsq | Learning::LsqPlus => QParams {
                scale: no_grad(self.scale_value()),
                zero_point: match &self.learned_zero_point {
                    Some(zp) => no_grad(zp.value())
                        .round()
                        .clamp(spec.qmin() as f64, spec.qmax() as f64),
                    None => observed.zero_point,
                },
            },
            Learning::Pact => QParams {
                // PACT's grid step: the learned clipping value over the grid's positive levels.
                scale: self.scale(),
                zero_point: observed.zero_point.zeros_like(),
            },
        }
    }

    /// The grid step this quantizer applies now, `[n]`, without gradients: [`Self::qparams`]'s
    /// scale without computing the zero point (which costs a launch of its own on a GPU).
    pub fn scale(&self) -> Tensor<1> {
        self.step_source().step()
    }

    /// [`Self::scale`] as the state it is computed from, for a kernel that computes it itself
    /// (the integer bias's step `s_x · s_w`: `crate::layers`).
    pub(crate) fn step_source(&self) -> StepSource {
        let spec = &self.config.spec;
        match self.config.learning {
            Learning::Fixed => {
                let (min, max) = self.observer.range();
                StepSource::range(min, max, spec)
            }
            Learning::Lsq | Learning::LsqPlus => self.learned_step(1.0),
            Learning::Pact => {
                let levels = if spec.signed {
                    spec.qmax()
                } else {
                    (1 << spec.bits) - 1
                };
                self.learned_step(levels as f32)
            }
        }
    }

    /// The learned scale over `divisor` as a [`StepSource`].
    fn learned_step(&self, divisor: f32) -> StepSource {
        let learned = self.learned_scale_param();
        StepSource::learned(learned.anchor.value_sync(), learned.delta.val(), divisor)
    }

    /// The layout of a tensor of `shape`; an activation's channel axis counts from the back.
    ///
    /// # Panics
    /// If an activation's channel axis does not exist in `shape`.
    pub fn layout(&self, shape: &[usize]) -> ParamLayout {
        match self.config.spec.granularity {
            Granularity::PerChannel { axis: Some(k) } if self.activation => {
                assert!(
                    k < shape.len(),
                    "activation channel axis {k} (from the last) does not exist in shape {shape:?}"
                );
                let axis = shape.len() - 1 - k;
                ParamLayout::new(shape, &Granularity::PerChannel { axis: Some(axis) })
            }
            ref granularity => ParamLayout::new(shape, granularity),
        }
    }

    fn scale_value(&self) -> Tensor<1> {
        self.learned_value().clamp_min(SCALE_EPS)
    }

    /// The learned scale (PACT: clipping value) as learned, before clamping at `SCALE_EPS`.
    fn learned_value(&self) -> Tensor<1> {
        self.learned_scale_param().value()
    }

    /// The learned scale's stored parts (PACT: clipping value).
    fn learned_scale_param(&self) -> &LearnedValue {
        self.learned_scale
            .as_ref()
            .expect("learned quantizers have a learned scale")
    }

    /// Folds `view` into the observer; returns the observer's new qparams when the fused
    /// observer kernel computed them along the way (see [`crate::Observer::observe`]).
    fn observe_view(&self, view: Tensor<4>, layout: &ParamLayout) -> Option<QParams> {
        let spec = &self.config.spec;
        let fused = self.observer.observe(no_grad(view), layout, spec);
        match self.config.learning {
            // Fixed quantizers read the observer when they quantize.
            Learning::Fixed => {}
            Learning::Lsq | Learning::LsqPlus => {
                let observed = fused.clone().unwrap_or_else(|| self.observer.qparams(spec));
                if let Some(scale) = &self.learned_scale {
                    scale.rebase(observed.scale);
                }
                if let Some(zp) = &self.learned_zero_point {
                    zp.rebase(observed.zero_point);
                }
            }
            Learning::Pact => {
                let (min, max) = self.observer.range();
                let alpha = if spec.signed {
                    max.abs().max_pair(min.abs())
                } else {
                    max.clamp_min(0.0)
                };
                if let Some(scale) = &self.learned_scale {
                    scale.rebase(alpha.clamp_min(SCALE_EPS));
                }
            }
        }
        fused
    }

    /// The zero point a learned scale without a learned zero point applies, `num_params` of
    /// them: a symmetric grid's constant (no need to read the observer), the observation's
    /// (`observed`, just computed), the frozen observer's (computed by the kernels from its
    /// range), or the observer's before it has seen data.
    fn unlearned_zero_point(
        &self,
        num_params: usize,
        observed: Option<QParams>,
        device: &Device,
    ) -> ZeroPoint {
        let spec = &self.config.spec;
        if spec.symmetric {
            return ZeroPoint::Given(Tensor::full(
                [num_params],
                spec.symmetric_zero_point() as f32,
                device,
            ));
        }
        match observed {
            Some(qparams) => ZeroPoint::Given(qparams.zero_point),
            None if self.learned_initialized() => {
                let (min, max) = self.observer.range();
                ZeroPoint::OfRange {
                    min,
                    max,
                    spec: spec.clone(),
                }
            }
            // An observer that has not seen data: the composite qparams (the smallest scale).
            None => ZeroPoint::Given(self.observer.qparams(spec).zero_point),
        }
    }

    /// `just_observed`: the observer has folded this very tensor in (see [`Self::clip_free`]).
    /// `rows`: `view` holds these rows of the observed tensor, one parameter each (see
    /// [`Self::forward_rows`]), so each reads its own row's parameters (picked out of the
    /// table, or read in it by the LSQ kernels under a learned scale alone). `observed`: the observer's
    /// qparams when the observation just computed them (saves recomputing them).
    fn fake_quantize_view(
        &self,
        view: Tensor<4>,
        layout: &ParamLayout,
        just_observed: bool,
        rows: Option<&Tensor<1, Int>>,
        observed: Option<QParams>,
    ) -> Tensor<4> {
        let spec = &self.config.spec;
        let (qmin, qmax) = (spec.qmin(), spec.qmax());
        let pick = |params: Tensor<1>| match rows {
            Some(rows) => params.select(0, rows.clone()),
            None => params,
        };
        match self.config.learning {
            Learning::Fixed => {
                // The fused observer computed the zero point already: pass it on (the kernels take
                // one anyway, and a zero tensor would cost a launch on a GPU).
                let computed = observed.is_some();
                let qp = observed.unwrap_or_else(|| self.observer.qparams(spec));
                let zero_point =
                    (computed || !spec.symmetric || !spec.signed).then(|| pick(qp.zero_point));
                let clip_possible = !(just_observed && self.clip_free());
                fake_quantize_layout(
                    view,
                    layout,
                    pick(qp.scale),
                    zero_point,
                    (qmin, qmax),
                    clip_possible,
                )
            }
            Learning::Lsq | Learning::LsqPlus => {
                let (factor, anchor, delta) = self.lsq_scale_parts(layout);
                // Rows of a table under a learned scale alone: the kernels read each row's
                // parameters in the table, one per table row.
                if let (Some(rows), None) = (rows, &self.learned_zero_point) {
                    let table_rows = anchor.dims()[0];
                    let device = view.device();
                    return fake_quantize_learned_rows(
                        view,
                        layout,
                        (anchor, delta),
                        self.unlearned_zero_point(table_rows, observed, &device),
                        rows,
                        (qmin, qmax),
                        factor,
                    );
                }
                let zero_point = match &self.learned_zero_point {
                    Some(zp) => ZeroPoint::Given(pick(zp.value())),
                    // No rows here: rows without a learned zero point took the branch above.
                    None => {
                        self.unlearned_zero_point(layout.num_params(), observed, &view.device())
                    }
                };
                // Unclamped: the fake-quant op clamps it at SCALE_EPS itself (inside the kernels),
                // and adds the stored parts there too.
                fake_quantize_learned_layout(
                    view,
                    layout,
                    (pick(anchor), pick(delta)),
                    zero_point,
                    (qmin, qmax),
                    factor,
                )
            }
            Learning::Pact => pact_view(
                view,
                layout.broadcast(self.scale_value()),
                spec.bits,
                spec.signed,
            ),
        }
    }

    /// Whether a tensor the observer has just seen can never be clipped: its range is the tensor's
    /// own (`averaging_constant = 1`), symmetric, on a narrow grid (`max|x| / scale = qmax`).
    fn clip_free(&self) -> bool {
        let spec = &self.config.spec;
        let own_range = matches!(self.config.observer, ObserverKind::MovingAverageMinMax { averaging_constant } if averaging_constant >= 1.0);
        own_range && spec.symmetric && spec.signed && spec.narrow_range
    }

    /// Whether the observer has seen data (so learned parameters were initialised); read from the
    /// saved observer state once, then remembered.
    fn learned_initialized(&self) -> bool {
        if self.initialized.get() {
            return true;
        }
        let min: f32 = self.observer.min.value_sync().narrow(0, 0, 1).into_scalar();
        let seen = min.is_finite();
        self.initialized.set(seen);
        seen
    }

    /// Counts one training step while the quant delay lasts; `true` while it does.
    fn in_quant_delay(&self) -> bool {
        if self.delay_over.get() {
            return false;
        }
        let steps = self.steps.value_sync();
        let seen = steps.clone().into_scalar::<f32>() as usize;
        if seen >= self.config.quant_delay {
            self.delay_over.set(true);
            return false;
        }
        self.steps.update(steps.add_scalar(1.0));
        self.steps.value_sync();
        true
    }
}

impl Reparameterization for Quantizer {
    const NAME: &'static str = "quant";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        self.fake_quantize(base)
    }
}
