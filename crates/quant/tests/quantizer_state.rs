//! Quantizer modules: switches, quant delay, learned parameters, no stray gradients, and
//! record save/load of every piece of state.
mod common;

use burn::module::Module;
use burn::nn::Embedding;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Int, Tensor};
use common::{assert_close, devices, values};
use quant::{
    Granularity, LayerKind, Learning, ObserverKind, QuantMapping, QuantRule, QuantSpec, Quantizer,
    QuantizerConfig, control,
};

fn act_config(learning: Learning) -> QuantizerConfig {
    QuantizerConfig::new(
        QuantSpec::new()
            .with_signed(false)
            .with_symmetric(false)
            .with_bits(4),
    )
    .with_observer(ObserverKind::MovingAverageMinMax {
        averaging_constant: 0.5,
    })
    .with_learning(learning)
}

fn quantizer(config: &QuantizerConfig, device: &Device) -> Quantizer {
    config.init(LayerKind::Activation, &[1, 8], device).unwrap()
}

#[test]
fn validation_keeps_fake_quant_on_and_stops_observing() {
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        let q = quantizer(&act_config(Learning::Fixed), &ad);
        let x = Tensor::<2>::random([4, 8], Distribution::Uniform(0.0, 3.0), &ad);
        let _ = q.forward(x.clone());
        let (min_before, max_before) = q.observer.range();
        let valid = q.valid();
        let xv = x.clone().inner().mul_scalar(10.0);
        let y = valid.forward(xv.clone());
        // Still quantized: at most 16 distinct values, all inside the observed range.
        let mut distinct = values(y.clone());
        distinct.sort_by(f32::total_cmp);
        distinct.dedup();
        assert!(distinct.len() <= 16, "{name}: {} levels", distinct.len());
        assert!(
            values(y.max())[0] <= values(max_before.clone())[0] + 1e-5,
            "{name}: clipped to observed max"
        );
        let (min_after, max_after) = valid.observer.range();
        assert_eq!(
            values(min_before),
            values(min_after),
            "{name}: valid() must not observe"
        );
        assert_eq!(values(max_before), values(max_after), "{name}");
        device.sync().unwrap();
    }
}

#[test]
fn bypass_observes_without_quantizing_and_freeze_stops_observing() {
    let device = Device::flex();
    let q = quantizer(&act_config(Learning::Fixed), &device);
    let q = control::set_fake_quant(q, false);
    let x = Tensor::<2>::from_floats([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 2.0]], &device);
    assert_eq!(
        values(q.forward(x.clone())),
        values(x.clone()),
        "bypass passes values through"
    );
    assert_eq!(
        values(q.observer.range().1),
        vec![2.0],
        "bypass still observes"
    );
    let q = control::set_observers(q, false);
    let _ = q.forward(x.clone().mul_scalar(5.0));
    assert_eq!(
        values(q.observer.range().1),
        vec![2.0],
        "frozen observer keeps its range"
    );
    let q = control::set_fake_quant(q, true);
    // Back on the frozen uint4 grid over [0, 2]: scale 2/15, zero point 0; codes `x · (1/s)`
    // rounded half to even, as PyTorch computes them (0.2 · (1/s) is just below 1.5: code 1).
    let scale = 2.0f32 / 15.0;
    let expected: Vec<f32> = values(x.clone())
        .iter()
        .map(|v| (v * (1.0 / scale)).round_ties_even().clamp(0.0, 15.0) * scale)
        .collect();
    assert_eq!(expected[..2], [scale, scale]);
    assert_close(
        "bypass",
        "grid",
        &values(q.forward(x)),
        &expected,
        1e-6,
        0.0,
    );
}

#[test]
fn quant_delay_counts_training_steps_and_survives_a_record_round_trip() {
    let ad = Device::flex().autodiff();
    let config = act_config(Learning::Fixed).with_quant_delay(2);
    let q = quantizer(&config, &ad);
    let x = Tensor::<2>::from_floats([[0.1, 0.23, 0.3, 0.4, 0.5, 0.6, 0.7, 2.0]], &ad);
    assert_eq!(
        values(q.forward(x.clone())),
        values(x.clone()),
        "step 1 delayed"
    );
    let record = q.clone().into_record();
    let resumed = quantizer(&config, &ad).load_record(record);
    assert_eq!(values(resumed.steps.value()), vec![1.0]);
    assert_eq!(
        values(resumed.forward(x.clone())),
        values(x.clone()),
        "step 2 delayed"
    );
    // Step 3 quantizes: the values of the composite per-tensor op with the observed grid.
    let qp = resumed.qparams();
    let scale = values(qp.scale)[0];
    let zero_point = values(qp.zero_point)[0] as i32;
    let expected =
        quant::fake_quantize_per_tensor_affine(x.clone().inner(), scale, zero_point, 0, 15);
    assert_eq!(
        values(resumed.forward(x)),
        values(expected),
        "step 3 quantizes"
    );
}

#[test]
fn fixed_scales_get_no_gradient_and_learned_ones_do() {
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        // Positive values inside the observed range: nothing clips, so dL/dx is exactly 1.
        let x = Tensor::<2>::random([16, 8], Distribution::Uniform(0.1, 3.0), &ad).require_grad();
        for learning in [Learning::Lsq, Learning::LsqPlus, Learning::Pact] {
            let q = quantizer(&act_config(learning), &ad);
            let _ = q.forward(x.clone()); // initialise from the observer
            let grads = q.forward(x.clone()).sum().backward();
            let scale = q.learned_scale.as_ref().unwrap();
            let ds = values(
                scale
                    .delta
                    .val()
                    .grad(&grads)
                    .expect("learned scale has a gradient"),
            );
            let dx = values(x.grad(&grads).expect("input gradient"));
            // 1 up to rounding (the composite path computes x · (1/s) · s); PACT's clip value is
            // the batch maximum, so that one element may sit on the boundary.
            let near = |g: f32, v: f32| (g - v).abs() <= 4.0 * f32::EPSILON;
            let ones = dx.iter().filter(|&&g| near(g, 1.0)).count();
            assert!(
                ones >= dx.len() - 1 && dx.iter().all(|&g| near(g, 0.0) || near(g, 1.0)),
                "{name}/{learning:?}: {dx:?}"
            );
            if learning == Learning::Lsq {
                // The scale gradient equals the composite LSQ op's, with LSQ's 1/sqrt(N·qmax).
                let qp = q.qparams();
                let s = qp.scale.clone().require_grad();
                let y = quant::fake_quantize_learnable(
                    x.clone().detach(),
                    s.clone(),
                    qp.zero_point,
                    &Granularity::PerTensor,
                    0,
                    15,
                    quant::lsq_grad_factor(128, 15),
                );
                let expected = values(s.grad(&y.sum().backward()).unwrap());
                assert_close(name, "lsq scale gradient", &ds, &expected, 1e-5, 1e-5);
            }
        }
        // A weight quantizer with observed scales: the weight gets a gradient, the scale computation none.
        let linear = LinearConfig::new(8, 4).init(&ad);
        let (linear, _) = QuantMapping::w8a8().prepare_weights(linear).unwrap();
        let input = Tensor::<2>::random([3, 8], Distribution::Default, &ad);
        let grads = linear.forward(input).sum().backward();
        assert!(
            linear.weight.base().grad(&grads).is_some(),
            "{name}: weight gradient"
        );
        let quant = linear.weight.reparameterization::<Quantizer>().unwrap();
        let (min, _) = quant.observer.range();
        assert!(
            !min.is_require_grad(),
            "{name}: observer state is not tracked"
        );
        // Drain the device queue before the test thread ends (lavapipe can crash if work is
        // still in flight at process exit).
        device.sync().unwrap();
    }
}

#[test]
fn learned_scale_starts_at_the_observed_scale() {
    let device = Device::flex();
    let config = act_config(Learning::Lsq);
    let q = quantizer(&config, &device);
    let x = Tensor::<2>::from_floats([[0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 15.0]], &device);
    let _ = q.forward(x.clone());
    let observed = q.observer.qparams(&config.spec);
    assert_close(
        "lsq",
        "scale",
        &values(q.qparams().scale),
        &values(observed.scale),
        1e-7,
        0.0,
    );
    // After initialisation the observer no longer moves a learned scale.
    let initial = values(q.qparams().scale);
    let _ = q.forward(x.mul_scalar(3.0));
    assert_eq!(values(q.qparams().scale), initial);
}

/// `Quantizer::scale` (the integer bias's step, computed without the zero point) is exactly the
/// scale of `Quantizer::qparams`, for every way a scale is found, symmetric grids and affine.
#[test]
fn scale_alone_equals_the_qparams_scale() {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::random([16, 8], Distribution::Uniform(-1.0, 3.0), &device);
    for learning in [
        Learning::Fixed,
        Learning::Lsq,
        Learning::LsqPlus,
        Learning::Pact,
    ] {
        for symmetric in [false, true] {
            if symmetric && learning == Learning::LsqPlus {
                continue; // LSQ+ learns a zero point: affine grids only
            }
            let mut config = act_config(learning);
            config.spec = config.spec.with_symmetric(symmetric).with_signed(symmetric);
            let q = quantizer(&config, &device);
            let _ = q.forward(x.clone());
            let name = &format!("{learning:?}, symmetric {symmetric}");
            let scale = q.scale();
            assert!(!scale.is_require_grad(), "{name}: the scale is a constant");
            assert_eq!(values(scale), values(q.qparams().scale), "{name}");
        }
    }
}

#[derive(Module, Debug)]
struct UserModel {
    embed: Embedding,
    conv: Conv2d,
    head: Linear,
    other: Linear,
}

fn user_model(device: &Device) -> UserModel {
    UserModel {
        embed: EmbeddingConfig::new(20, 8).init(device),
        conv: Conv2dConfig::new([3, 6], [3, 3]).init(device),
        head: LinearConfig::new(8, 5).init(device),
        other: LinearConfig::new(5, 5).init(device),
    }
}

#[test]
fn mapping_quantizes_a_user_model_by_path_and_kind() {
    let device = Device::flex();
    let mapping = QuantMapping::w8a8().with_rules(vec![
        QuantRule {
            pattern: Some("^other\\.".into()),
            layer: None,
            rank: None,
            weight: None,
            activation: None,
            float: true,
        },
        QuantRule {
            pattern: None,
            layer: Some(LayerKind::Embedding),
            rank: None,
            weight: Some(QuantizerConfig::new(
                QuantSpec::new()
                    .with_bits(4)
                    .with_granularity(Granularity::PerChannel { axis: None }),
            )),
            activation: None,
            float: false,
        },
        // Rank 4 (the conv) gets 6 bits; the rank-2 Linear keeps the default 8.
        QuantRule {
            pattern: None,
            layer: None,
            rank: Some(4),
            weight: Some(QuantizerConfig::new(
                QuantSpec::new()
                    .with_bits(6)
                    .with_granularity(Granularity::PerChannel { axis: None }),
            )),
            activation: None,
            float: false,
        },
    ]);
    let (model, report) = mapping.prepare_weights(user_model(&device)).unwrap();
    let paths: Vec<(&str, LayerKind, u32)> = report
        .iter()
        .map(|p| (p.path.as_str(), p.layer, p.config.spec.bits))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("embed.weight", LayerKind::Embedding, 4),
            ("conv.weight", LayerKind::Conv2d, 6),
            ("head.weight", LayerKind::Linear, 8)
        ]
    );
    let axis = |p: &quant::QuantizedParam| p.config.spec.granularity.clone();
    assert_eq!(axis(&report[0]), Granularity::PerChannel { axis: Some(0) });
    assert_eq!(axis(&report[1]), Granularity::PerChannel { axis: Some(0) });
    assert_eq!(axis(&report[2]), Granularity::PerChannel { axis: Some(1) });
    assert!(
        model
            .other
            .weight
            .reparameterization::<Quantizer>()
            .is_none()
    );
    // Embedding rows are quantized to 4 bits per row: at most 16 levels in each row.
    let rows = model
        .embed
        .forward(Tensor::<2, Int>::from_ints([[0, 1]], &device));
    let mut row: Vec<f32> = values(rows.slice([0..1, 0..1, 0..8]));
    row.sort_by(f32::total_cmp);
    row.dedup();
    assert!(row.len() <= 16);
    // materialize() folds the quantizers into plain weights, equal to the fake-quantized ones.
    let fake = values(model.head.weight.val());
    let folded = model.materialize();
    assert!(
        folded
            .head
            .weight
            .reparameterization::<Quantizer>()
            .is_none()
    );
    assert_eq!(values(folded.head.weight.val()), fake);
}

#[test]
fn mapping_errors_name_the_field() {
    let device = Device::flex();
    let bad_regex = QuantMapping::w8a8().with_rules(vec![QuantRule {
        pattern: Some("(".into()),
        layer: None,
        rank: None,
        weight: None,
        activation: None,
        float: false,
    }]);
    let err = bad_regex
        .prepare_weights(user_model(&device))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rules[0].pattern"), "{err}");
    let grouped = QuantizerConfig::new(QuantSpec::new().with_granularity(Granularity::PerGroup {
        axis: None,
        group_size: 3,
    }));
    let err = QuantMapping::new()
        .with_weight(Some(grouped))
        .prepare_weights(user_model(&device))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("embed.weight")
            && err.contains("group_size")
            && err.contains("does not divide"),
        "{err}"
    );
    let nine = QuantizerConfig::new(QuantSpec::new().with_bits(9));
    let err = QuantMapping::new()
        .with_weight(Some(nine))
        .validate()
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid `weight.spec.bits`: 9 is not supported; use 2..=8 or 16"
    );
}

#[test]
fn per_group_weights_get_one_scale_per_group() {
    let device = Device::flex();
    let config = QuantizerConfig::new(QuantSpec::new().with_bits(4).with_granularity(
        Granularity::PerGroup {
            axis: None,
            group_size: 4,
        },
    ))
    .with_observer(ObserverKind::current());
    let (linear, report) = QuantMapping::new()
        .with_weight(Some(config))
        .prepare_weights(LinearConfig::new(8, 3).init(&device))
        .unwrap();
    assert_eq!(
        report[0].config.spec.granularity,
        Granularity::PerGroup {
            axis: Some(0),
            group_size: 4
        }
    );
    let quant = linear.weight.reparameterization::<Quantizer>().unwrap();
    assert_eq!(quant.observer.range().0.dims(), [6]); // 8/4 groups × 3 outputs
}

#[test]
fn every_quantizer_state_round_trips_through_a_record_file() {
    let device = Device::flex();
    let dir = std::env::temp_dir().join(format!("quant-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, mapping) in [
        QuantMapping::w8a8(),
        QuantMapping::w4a4(),
        QuantMapping::w2a8(),
    ]
    .into_iter()
    .enumerate()
    {
        let (model, _) = mapping.prepare_weights(user_model(&device)).unwrap();
        let act = mapping
            .activation
            .clone()
            .unwrap()
            .init(LayerKind::Activation, &[1, 5], &device)
            .unwrap();
        let _ = act.forward(Tensor::<2>::random([4, 5], Distribution::Default, &device));
        let path = dir.join(format!("model-{i}"));
        model.clone().save_file(&path).unwrap();
        act.clone().save_file(dir.join(format!("act-{i}"))).unwrap();
        // Fresh modules with different random weights, then load.
        let (fresh, _) = mapping.prepare_weights(user_model(&device)).unwrap();
        let loaded = fresh.load_file(&path);
        let fresh_act = mapping
            .activation
            .clone()
            .unwrap()
            .init(LayerKind::Activation, &[1, 5], &device)
            .unwrap();
        let loaded_act = fresh_act.load_file(dir.join(format!("act-{i}")));
        for (a, b) in [(&model.head, &loaded.head), (&model.other, &loaded.other)] {
            assert_eq!(
                values(a.weight.val()),
                values(b.weight.val()),
                "fake-quantized weights identical"
            );
        }
        let qa = model.conv.weight.reparameterization::<Quantizer>().unwrap();
        let qb = loaded
            .conv
            .weight
            .reparameterization::<Quantizer>()
            .unwrap();
        assert_eq!(values(qa.observer.range().0), values(qb.observer.range().0));
        assert_eq!(values(qa.qparams().scale), values(qb.qparams().scale));
        assert_eq!(
            values(act.observer.range().1),
            values(loaded_act.observer.range().1)
        );
        assert_eq!(
            values(act.qparams().scale),
            values(loaded_act.qparams().scale)
        );
        assert_eq!(
            values(act.qparams().zero_point),
            values(loaded_act.qparams().zero_point)
        );
    }
}

#[test]
fn a_loaded_record_is_read_again_not_answered_from_a_cache() {
    let device = Device::flex();
    let config = act_config(Learning::Lsq);
    let q = quantizer(&config, &device);
    let _ = q.forward(Tensor::<2>::random(
        [4, 8],
        Distribution::Uniform(0.0, 1.0),
        &device,
    ));
    // A quantizer that never observed: loading its record must make `q` initialise again.
    let fresh = quantizer(&config, &device).into_record();
    let reloaded = q.clone().load_record(fresh);
    let x = Tensor::<2>::random([4, 8], Distribution::Uniform(0.0, 9.0), &device);
    let _ = reloaded.forward(x);
    let observed = reloaded.observer.qparams(&reloaded.config.spec);
    assert_eq!(values(reloaded.qparams().scale), values(observed.scale));
}

#[test]
fn prepare_refuses_to_drop_the_activation_half_of_a_scheme() {
    let device = Device::flex();
    let err = quant::qat::prepare(user_model(&device), &QuantMapping::w4a8())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("weights_only") && err.contains("activation"),
        "{err}"
    );
    let (model, report) = quant::qat::prepare(user_model(&device), &QuantMapping::w4()).unwrap();
    assert_eq!(report.weights.len(), 4);
    assert!(report.activation_quantizers.is_empty());
    assert!(
        model
            .head
            .weight
            .reparameterization::<Quantizer>()
            .is_some()
    );
}

#[test]
fn quantizer_params_are_found_by_type_and_survive_loading_a_record() {
    let device = Device::flex().autodiff();
    let layer = quant::QuantLinearConfig::new(8, 4)
        .with_weight(QuantMapping::w4a4().weight)
        .with_output(QuantMapping::w4a4().activation)
        .init(&device);
    let group = quant::qat::quantizer_params(&layer);
    // The weight's LSQ step and the output's LSQ step (its zero point is observed, not learned).
    let weight_delta = layer
        .weight
        .reparameterization::<Quantizer>()
        .unwrap()
        .learned_scale
        .as_ref()
        .unwrap()
        .delta
        .id;
    let output_delta = layer
        .output_quant
        .as_ref()
        .unwrap()
        .learned_scale
        .as_ref()
        .unwrap()
        .delta
        .id;
    assert!(group.matches(&weight_delta, None) && group.matches(&output_delta, None));
    assert!(
        !group.matches(&layer.weight.id, None),
        "the weight itself is not a quantizer parameter"
    );
    let loaded = layer.clone().load_record(layer.clone().into_record());
    let reloaded_delta = loaded
        .output_quant
        .as_ref()
        .unwrap()
        .learned_scale
        .as_ref()
        .unwrap()
        .delta
        .id;
    assert!(group.matches(&reloaded_delta, None));
}
