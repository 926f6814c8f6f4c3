//! [`Observer`]: accumulated per-parameter range of the tensors a quantizer has seen.

use burn::module::{Module, ModuleMapper, Param, RunningState};
use burn::tensor::{Device, Tensor};

use super::{
    ObserverKind, batch_entropy, batch_max_abs, batch_min_max, batch_mse_optimal, batch_percentile,
};
use crate::math::{
    ObserveRule, StepSource, fused_observe, fused_observe_fake_quant, fused_observe_fake_quant_bias,
};
use crate::{ParamLayout, QParams, QuantSpec, no_grad, qparams_from_range, scale_from_range};

/// Running `min` / `max` per quantization parameter, saved in module records.
///
/// Before any observation both are infinite (`+∞` / `-∞`); [`Observer::qparams`] then yields the
/// smallest scale, so an unobserved quantizer collapses values to the zero point (PyTorch does the same).
#[derive(Module, Debug)]
pub struct Observer {
    /// Per-parameter lower end of the range, `[n]`.
    pub min: RunningState<Tensor<1>>,
    /// Per-parameter upper end of the range, `[n]`.
    pub max: RunningState<Tensor<1>>,
    /// Range estimator and accumulation rule.
    #[module(skip)]
    pub kind: ObserverKind,
}

impl Observer {
    /// An observer with `num_params` ranges on `device`, nothing observed yet.
    pub fn new(kind: ObserverKind, num_params: usize, device: &Device) -> Self {
        let inf = Tensor::<1>::full([num_params], f32::INFINITY, device);
        Self {
            min: RunningState::new(inf.clone()),
            max: RunningState::new(inf.neg()),
            kind,
        }
    }

    /// Folds one batch (a 4-D view of it under `layout`) into the running range. Where the fused
    /// kernels run (Flex, CubeCL), min-max and moving-average observers do it in one kernel that
    /// also computes the qparams of the new range, and return them (the same values
    /// [`Self::qparams`] would compute, without its ops); otherwise `None`.
    pub fn observe(
        &self,
        view: Tensor<4>,
        layout: &ParamLayout,
        spec: &QuantSpec,
    ) -> Option<QParams> {
        if let Some(qparams) = self.observe_fused(&view, layout, spec) {
            return Some(qparams);
        }
        let (batch_min, batch_max) = match self.kind {
            // A symmetric grid only needs max(|min|, |max|): one reduction instead of two.
            ObserverKind::MinMax | ObserverKind::MovingAverageMinMax { .. } if spec.symmetric => {
                let bound = batch_max_abs(view, layout);
                (bound.clone().neg(), bound)
            }
            ObserverKind::MinMax | ObserverKind::MovingAverageMinMax { .. } => {
                batch_min_max(view, layout)
            }
            ObserverKind::Percentile { percentile, .. } => {
                batch_percentile(view, layout, percentile)
            }
            ObserverKind::Mse { grid, .. } => batch_mse_optimal(view, layout, spec, grid),
            ObserverKind::Entropy { bins, .. } => batch_entropy(view, layout, spec, bins),
        };
        let old_min = self.min.value_sync();
        let old_max = self.max.value_sync();
        let (min, max) = match self.kind.averaging_constant() {
            None => (old_min.min_pair(batch_min), old_max.max_pair(batch_max)),
            Some(c) if c >= 1.0 => (batch_min, batch_max),
            Some(c) => (
                moving_average(old_min, batch_min, c),
                moving_average(old_max, batch_max, c),
            ),
        };
        self.min.update(min);
        self.max.update(max);
        // Commit now: `RunningState::value()` otherwise lags one update, and records would miss it.
        self.min.value_sync();
        self.max.value_sync();
        None
    }

    /// [`Self::observe`] and the fake quantization of `view` with the new qparams as one fused
    /// op (on a GPU one or two launches where the two take two to four), for min-max and
    /// moving-average observers on devices with the fused kernels; `None` elsewhere (nothing
    /// observed then). `view`'s gradient is masked where the new range clips it, or passes
    /// straight through when `clip_free` (the new range cannot clip it: see
    /// `Quantizer::clip_free`).
    pub(crate) fn observe_and_fake_quantize(
        &self,
        view: &Tensor<4>,
        layout: &ParamLayout,
        spec: &QuantSpec,
        clip_free: bool,
    ) -> Option<Tensor<4>> {
        let averaging = self.fused_averaging()?;
        let running = (self.min.value_sync(), self.max.value_sync());
        let ((min, max), dequantized) = fused_observe_fake_quant(
            view,
            running,
            layout.is_per_group(),
            layout.num_params(),
            ObserveRule::for_spec(spec, averaging),
            clip_free,
        )?;
        set_running(&self.min, min);
        set_running(&self.max, max);
        Some(dequantized)
    }

    /// [`Self::observe_and_fake_quantize`] of a weight whose new range cannot clip it (see
    /// `Quantizer::clip_free`), with its layer's `bias` rounded at the accumulator step
    /// `s_w · s_x`, `s_x` the input quantizer's step `input` (a layer's integer bias, see
    /// `crate::layers`): `(dq, rounded bias)`, in one launch on a GPU
    /// where the two took two; `None` where [`Self::observe_and_fake_quantize`] is (nothing
    /// observed then).
    pub(crate) fn observe_and_fake_quantize_with_bias(
        &self,
        view: &Tensor<4>,
        layout: &ParamLayout,
        spec: &QuantSpec,
        bias: Tensor<1>,
        input: &StepSource,
    ) -> Option<(Tensor<4>, Tensor<1>)> {
        let averaging = self.fused_averaging()?;
        let running = (self.min.value_sync(), self.max.value_sync());
        let ((min, max), dequantized, rounded) = fused_observe_fake_quant_bias(
            view,
            running,
            bias,
            input,
            (layout.is_per_group(), layout.num_params()),
            ObserveRule::for_spec(spec, averaging),
        )?;
        set_running(&self.min, min);
        set_running(&self.max, max);
        Some((dequantized, rounded))
    }

    /// The fused observer kernel's `averaging` argument for this observer's kind (see
    /// [`ObserveRule`]), or `None` for the kinds it does not compute (percentile, MSE).
    fn fused_averaging(&self) -> Option<f32> {
        match self.kind {
            ObserverKind::MinMax => Some(-1.0),
            ObserverKind::MovingAverageMinMax { averaging_constant } => {
                Some(averaging_constant as f32)
            }
            _ => None,
        }
    }

    /// [`Self::observe`] through the fused observer kernel, for min-max and moving-average
    /// observers on devices that have it.
    fn observe_fused(
        &self,
        view: &Tensor<4>,
        layout: &ParamLayout,
        spec: &QuantSpec,
    ) -> Option<QParams> {
        let averaging = self.fused_averaging()?;
        let old = (self.min.value_sync(), self.max.value_sync());
        let [min, max, scale, zero_point] = fused_observe(
            &no_grad(view.clone()),
            Some(old),
            layout.is_per_group(),
            layout.num_params(),
            ObserveRule::for_spec(spec, averaging),
        )?;
        set_running(&self.min, min);
        set_running(&self.max, max);
        Some(QParams { scale, zero_point })
    }

    /// The accumulated `(min, max)`, `[n]` each.
    pub fn range(&self) -> (Tensor<1>, Tensor<1>) {
        (self.min.value_sync(), self.max.value_sync())
    }

    /// Scale and zero point for `spec` from the accumulated range.
    pub fn qparams(&self, spec: &QuantSpec) -> QParams {
        let (min, max) = self.range();
        qparams_from_range(min, max, spec)
    }

    /// The scale alone of [`Self::qparams`] (see [`scale_from_range`]).
    pub fn scale(&self, spec: &QuantSpec) -> Tensor<1> {
        let (min, max) = self.range();
        scale_from_range(min, max, spec)
    }
}

/// Sets a running state's value without a tensor op. `RunningState::update` averages the updates
/// of all threads when the value is next read (a division by one for a single thread: one kernel
/// launch per state per step on a GPU); `map` replaces the value instead, and a `RunningState`'s
/// clones share it, so mapping a clone sets this one.
fn set_running(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    struct Set(Option<Tensor<1>>);
    impl ModuleMapper for Set {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, old, _) = param.consume();
            let new = self
                .0
                .take()
                .expect("one running state")
                .reshape(old.shape());
            Param::initialized(id, new)
        }
    }
    let _ = state.clone().map(&mut Set(Some(value)));
}

/// `old + c · (new - old)`, or `new` where nothing was observed yet (`old` infinite).
fn moving_average(old: Tensor<1>, new: Tensor<1>, c: f64) -> Tensor<1> {
    let unset = old.clone().is_inf();
    let averaged = old.clone() + (new.clone() - old).mul_scalar(c);
    averaged.mask_where(unset, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Granularity;
    use crate::observer::entropy_amax;
    use crate::testing::values;
    use burn::tensor::TensorData;

    fn observe(kind: ObserverKind, batches: &[&[f32]]) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex();
        let observer = Observer::new(kind, 1, &device);
        let spec = QuantSpec::new().with_symmetric(false);
        for batch in batches {
            let x = Tensor::<1>::from_floats(*batch, &device);
            let layout = ParamLayout::new(&[batch.len()], &Granularity::PerTensor);
            observer.observe(layout.to_view(x), &layout, &spec);
        }
        let (min, max) = observer.range();
        (
            min.to_data().try_to_vec::<f32>().unwrap(),
            max.to_data().try_to_vec::<f32>().unwrap(),
        )
    }

    /// Observing and fake-quantizing as one fused op (on a GPU one launch, or two: a reduction
    /// into atomic range keys, then the update and the fake quantization) gives what the
    /// observer's own update followed by the fixed-scale fake quantization gives: the same
    /// running range and qparams and the same values, bit for bit, and the same gradient, passed
    /// straight through for a tensor the range cannot clip and masked where it clips otherwise;
    /// on Flex and wgpu, for each observer kind the op serves (with a batch seen before, so
    /// running extremes and moving averages have something to fold into), symmetric narrow and
    /// affine grids, and per-tensor, per-channel (strided, as a Linear's `[in, out]` weight; a
    /// convolution's), per-group and odd layouts, parameters longer than one GPU reduction cube
    /// (4,096 elements: several cubes fold into one parameter's keys), and tensors that lie
    /// wholly above or below zero (the order keys of positive and negative floats).
    #[test]
    fn observing_and_fake_quantizing_in_one_op_equals_the_two_ops() {
        use crate::math::kernels::fake_quantize_layout;
        use burn::tensor::Distribution;
        let kinds = [
            ObserverKind::MinMax,
            ObserverKind::MovingAverageMinMax {
                averaging_constant: 1.0,
            },
            ObserverKind::MovingAverageMinMax {
                averaging_constant: 0.25,
            },
        ];
        // (shape, granularity, the mean of the values)
        let layouts = [
            (vec![7, 13], Granularity::PerTensor, 0.3),
            (vec![37, 11], Granularity::PerChannel { axis: Some(1) }, 0.3),
            (
                vec![5, 3, 3, 3],
                Granularity::PerChannel { axis: Some(0) },
                0.3,
            ),
            (
                vec![8, 6],
                Granularity::PerGroup {
                    axis: Some(0),
                    group_size: 4,
                },
                0.3,
            ),
            (
                vec![2, 5000],
                Granularity::PerChannel { axis: Some(0) },
                0.3,
            ),
            (vec![3, 7001], Granularity::PerTensor, 0.3),
            (vec![64, 80], Granularity::PerTensor, 9.0),
            (
                vec![6, 900],
                Granularity::PerChannel { axis: Some(1) },
                -9.0,
            ),
        ];
        let specs = [
            QuantSpec::new().with_narrow_range(true),
            QuantSpec::new().with_symmetric(false),
        ];
        let mut clipped_cases = 0;
        for device in crate::testing::kernel_devices() {
            for kind in &kinds {
                for (shape, granularity, mean) in &layouts {
                    for spec in &specs {
                        for clip_free in [true, false] {
                            let name = format!(
                                "{device:?} {kind:?} {shape:?} {granularity:?} mean {mean} \
                                 {spec:?} clip-free {clip_free}"
                            );
                            let layout = ParamLayout::new(shape, granularity);
                            let n: usize = shape.iter().product();
                            let batch = || {
                                let normal = Distribution::Normal(*mean, 2.0);
                                layout.to_view(Tensor::<1>::random([n], normal, &device))
                            };
                            let num_params = layout.num_params();
                            let fused = Observer::new(kind.clone(), num_params, &device);
                            let reference = Observer::new(kind.clone(), num_params, &device);
                            let first = batch();
                            fused.observe(first.clone(), &layout, spec);
                            reference.observe(first, &layout, spec);

                            let x = batch().require_grad();
                            let y = fused
                                .observe_and_fake_quantize(&x, &layout, spec, clip_free)
                                .expect("the fused kernels run here");
                            let qp = reference
                                .observe(no_grad(x.clone()), &layout, spec)
                                .expect("the fused observer runs here");
                            let x_ref = no_grad(x.clone()).require_grad();
                            let expected = fake_quantize_layout(
                                x_ref.clone(),
                                &layout,
                                qp.scale,
                                Some(qp.zero_point),
                                (spec.qmin(), spec.qmax()),
                                !clip_free,
                            );
                            assert_eq!(
                                values(y.clone()),
                                values(expected.clone()),
                                "{name}: values"
                            );
                            let [(min, max), (min_ref, max_ref)] =
                                [fused.range(), reference.range()];
                            assert_eq!(values(min), values(min_ref), "{name}: running min");
                            assert_eq!(values(max), values(max_ref), "{name}: running max");
                            let dy = batch();
                            let grads = (y * dy.clone()).sum().backward();
                            let dx = values(x.grad(&grads).expect("x has a gradient"));
                            let grads = (expected * dy.clone()).sum().backward();
                            let dx_ref = values(x_ref.grad(&grads).expect("x has a gradient"));
                            assert_eq!(dx, dx_ref, "{name}: gradient");
                            if clip_free {
                                assert_eq!(dx, values(dy), "{name}: straight-through gradient");
                            } else if dx.contains(&0.0) {
                                clipped_cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            clipped_cases > 0,
            "some case clips, so the masks are checked"
        );
    }

    #[test]
    fn min_max_keeps_extremes() {
        let (min, max) = observe(ObserverKind::MinMax, &[&[-1.0, 2.0], &[-0.5, 3.0]]);
        assert_eq!((min, max), (vec![-1.0], vec![3.0]));
    }

    #[test]
    fn moving_average_starts_from_first_batch() {
        let kind = ObserverKind::MovingAverageMinMax {
            averaging_constant: 0.5,
        };
        let (min, max) = observe(kind, &[&[-1.0, 2.0], &[-3.0, 4.0]]);
        assert_eq!((min, max), (vec![-2.0], vec![3.0]));
    }

    #[test]
    fn percentile_ignores_outliers() {
        let mut batch: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        batch[999] = 100.0;
        let kind = ObserverKind::Percentile {
            percentile: 99.0,
            averaging_constant: 1.0,
        };
        let (min, max) = observe(kind, &[&batch]);
        assert!((min[0] - 0.01).abs() < 1e-6, "{min:?}");
        assert!((max[0] - 0.989).abs() < 1e-6, "{max:?}");
    }

    /// The entropy observer through `Observer::observe`: each channel of a per-channel layout
    /// gets the threshold of its own values (one channel with outliers, one without), and the
    /// kind's moving average folds batches.
    #[test]
    fn entropy_clips_each_channel_by_its_own_histogram() {
        let device = Device::flex();
        let spec = QuantSpec::new().with_symmetric(false);
        let kind = ObserverKind::Entropy {
            bins: 2048,
            averaging_constant: 1.0,
        };
        let rows = 50_000;
        // [rows, 2]: channel 0 normal with outliers at ±40, channel 1 uniform on [0, 2].
        let normal = crate::observer::entropy::tests::gaussian(rows, 3);
        let mut data = Vec::with_capacity(rows * 2);
        for (k, v) in normal.into_iter().enumerate() {
            data.push(if k % 20_000 == 0 { 40.0 } else { v });
            data.push(((k * 104_729) % 4001) as f32 / 2000.0);
        }
        let layout = ParamLayout::new(&[rows, 2], &Granularity::PerChannel { axis: Some(1) });
        let observer = Observer::new(kind.clone(), 2, &device);
        let x = Tensor::<2>::from_data(TensorData::new(data.clone(), [rows, 2]), &device);
        observer.observe(layout.to_view(x), &layout, &spec);
        let (min, max) = observer.range();
        let (min, max) = (values(min), values(max));
        let channel = |c: usize| {
            data.iter()
                .skip(c)
                .step_by(2)
                .copied()
                .collect::<Vec<f32>>()
        };
        let amax0 = entropy_amax(&channel(0), 2048, 8, false);
        let amax1 = entropy_amax(&channel(1), 2048, 8, true);
        assert!(amax0 < 5.0, "the outliers set the range: {amax0}");
        assert_eq!((min[0], max[0]), (-amax0, amax0));
        assert_eq!((min[1], max[1]), (0.0, amax1));
        assert!(kind.validate().is_ok());
        let few = ObserverKind::Entropy {
            bins: 100,
            averaging_constant: 1.0,
        };
        assert!(few.validate().unwrap_err().to_string().contains("bins"));
    }

    #[test]
    fn mse_search_clips_a_long_tail() {
        // Values spread over [-10, 10] and one outlier at 100: covering the outlier would put most
        // values on the zero code, so the MSE-optimal 4-bit range clips it.
        let mut batch: Vec<f32> = (0..999).map(|i| (i % 21) as f32 - 10.0).collect();
        batch.push(100.0);
        let device = Device::flex();
        let spec = QuantSpec::new().with_bits(4);
        let observer = Observer::new(
            ObserverKind::Mse {
                grid: 40,
                averaging_constant: 1.0,
            },
            1,
            &device,
        );
        let layout = ParamLayout::new(&[1000], &Granularity::PerTensor);
        observer.observe(
            layout.to_view(Tensor::<1>::from_floats(batch.as_slice(), &device)),
            &layout,
            &spec,
        );
        let max: f32 = observer.range().1.into_scalar();
        assert!(max < 50.0 && max > 9.0, "max {max}");
    }

    #[test]
    fn unobserved_quantizer_has_minimum_scale() {
        let device = Device::flex();
        let observer = Observer::new(ObserverKind::MinMax, 3, &device);
        let qp = observer.qparams(&QuantSpec::new());
        let scale: Vec<f32> = qp.scale.to_data().try_to_vec::<f32>().unwrap();
        assert_eq!(scale, vec![f32::EPSILON; 3]);
    }

    /// The MSE search equals a brute-force search on the host: for each channel, every candidate
    /// range `α · (min, max)`, the fake-quantization error, the first minimum.
    #[test]
    fn mse_search_equals_a_brute_force_search() {
        let device = Device::flex();
        let spec = QuantSpec::new().with_bits(4);
        let (qmin, qmax) = (spec.qmin() as f32, spec.qmax() as f32);
        let grid = 20;
        let (channels, per_channel) = (3, 50);
        // A long tail in each channel, of a different size, so the optimum differs per channel.
        let data: Vec<f32> = (0..channels * per_channel)
            .map(|i| {
                let (c, k) = (i % channels, i / channels);
                let base = ((k * 37 + c * 11) % 23) as f32 / 23.0 - 0.5;
                if k == 0 {
                    4.0 * (c + 1) as f32
                } else {
                    base * (c + 1) as f32
                }
            })
            .collect();
        let granularity = Granularity::PerChannel { axis: Some(1) };
        let layout = ParamLayout::new(&[per_channel, channels], &granularity);
        let observer = Observer::new(
            ObserverKind::Mse {
                grid,
                averaging_constant: 1.0,
            },
            channels,
            &device,
        );
        let x = Tensor::<1>::from_floats(data.as_slice(), &device).reshape([per_channel, channels]);
        observer.observe(layout.to_view(x), &layout, &spec);
        let got = observer.range().1.to_data().try_to_vec::<f32>().unwrap();
        for c in 0..channels {
            let column: Vec<f32> = (0..per_channel).map(|k| data[k * channels + c]).collect();
            let (lo, hi) = column
                .iter()
                .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
            let mut best = (f32::INFINITY, 0f32);
            for k in 1..=grid {
                let alpha = k as f32 / grid as f32;
                let bound = (lo * alpha).abs().max(hi * alpha);
                let scale = (bound / ((qmax - qmin) / 2.0)).max(f32::EPSILON);
                let mse: f32 = column
                    .iter()
                    .map(|&v| {
                        let q = (v * (1.0 / scale)).round_ties_even().clamp(qmin, qmax) * scale;
                        (q - v) * (q - v)
                    })
                    .sum::<f32>()
                    / per_channel as f32;
                if mse < best.0 {
                    best = (mse, hi * alpha);
                }
            }
            assert!(
                (got[c] - best.1).abs() <= 1e-6 * best.1.abs().max(1.0),
                "channel {c}: {} vs {}",
                got[c],
                best.1
            );
        }
    }
}
