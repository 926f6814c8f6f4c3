//! Drop-in layers: float checkpoints of the matching `burn::nn` layers load unchanged, a layer
//! without quantizers equals its float twin, and conv + BN folding is exact.
mod common;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Distribution, Tensor};
use common::{assert_close, devices, values};
use quant::{ConvBn2dConfig, QuantConv2dConfig, QuantLinearConfig, QuantMapping, control};

#[derive(Module, Debug)]
struct FloatConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

fn float_conv_bn(device: &Device) -> FloatConvBn {
    FloatConvBn {
        conv: Conv2dConfig::new([3, 4], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(device),
        bn: BatchNormConfig::new(4).init(device),
    }
}

/// Trains a float conv+BN a few steps so its running statistics are not the defaults.
fn warmed_float_conv_bn(device: &Device) -> FloatConvBn {
    let ad = device.clone().autodiff();
    let model = float_conv_bn(&ad);
    for _ in 0..3 {
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(1.0, 2.0), &ad);
        let _ = model.bn.forward(model.conv.forward(x));
    }
    model.valid()
}

#[test]
fn float_linear_checkpoint_loads_into_quant_linear() {
    for (name, device) in devices() {
        let float: Linear = LinearConfig::new(6, 3).init(&device);
        let record = float.clone().into_record();
        let mapping = QuantMapping::w8a8();
        let quant = QuantLinearConfig::new(6, 3)
            .with_input(mapping.activation.clone())
            .init(&device);
        let quant = quant
            .try_load_record(record.allow_partial(true))
            .expect("float record loads");
        assert_eq!(
            values(quant.weight.base()),
            values(float.weight.val()),
            "{name}"
        );
        let x = Tensor::<2>::random([4, 6], Distribution::Default, &device);
        let quant = control::set_fake_quant(quant, false);
        assert_close(
            name,
            "bypassed output",
            &values(quant.forward(x.clone())),
            &values(float.forward(x)),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn quant_conv2d_without_quantizers_equals_conv2d() {
    for (name, device) in devices() {
        let config = QuantConv2dConfig::new([3, 5], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Same);
        let float = config.conv_config().init(&device);
        let quant = config
            .init(&device)
            .load_record(float.clone().into_record());
        let x = Tensor::<4>::random([2, 3, 7, 7], Distribution::Default, &device);
        assert_close(
            name,
            "conv",
            &values(quant.forward(x.clone())),
            &values(float.forward(x)),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn conv_bn_folding_equals_float_conv_then_bn_in_inference() {
    for (name, device) in devices() {
        let float = warmed_float_conv_bn(&device);
        let record: ModuleRecord = float.clone().into_record();
        let conv = QuantConv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same);
        let fused = ConvBn2dConfig::new(conv).init(&device).load_record(record);
        let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(1.0, 2.0), &device);
        let expected = values(float.bn.forward(float.conv.forward(x.clone())));
        assert_close(
            name,
            "folded",
            &values(fused.forward(x)),
            &expected,
            1e-4,
            1e-4,
        );
    }
}

#[test]
fn conv_bn_training_forward_uses_batch_statistics_like_conv_then_bn() {
    let device = Device::flex();
    let ad = device.clone().autodiff();
    let float = warmed_float_conv_bn(&device);
    let record = float.clone().into_record();
    let fused = ConvBn2dConfig::new(
        QuantConv2dConfig::new([3, 4], [3, 3]).with_padding(PaddingConfig2d::Same),
    )
    .init(&ad)
    .load_record(record.clone());
    let float_train = float_conv_bn(&ad).load_record(record);
    let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(1.0, 2.0), &ad);
    let expected = values(float_train.bn.forward(float_train.conv.forward(x.clone())));
    assert_close(
        "train",
        "bn live",
        &values(fused.forward(x.clone())),
        &expected,
        1e-4,
        1e-4,
    );
    // Frozen BN statistics: the training forward is the folded (deployment) computation.
    let frozen = control::set_bn_frozen(fused, true);
    let inference = values(
        float_train
            .valid()
            .bn
            .forward(float_train.valid().conv.forward(x.clone().inner())),
    );
    assert_close(
        "train",
        "bn frozen",
        &values(frozen.forward(x)),
        &inference,
        1e-4,
        1e-4,
    );
}

#[test]
fn conv_bn_quantizes_the_folded_weight() {
    let device = Device::flex();
    let mapping = QuantMapping::w4a8();
    let float = ConvBn2dConfig::new(QuantConv2dConfig::new([3, 4], [3, 3]))
        .init(&device)
        .load_record(warmed_float_conv_bn(&device).into_record());
    let layer = float
        .with_quantizers(&mapping.layer("", quant::LayerKind::Conv2d, 4, 4))
        .unwrap();
    let folded = layer.folded_weight();
    let quantized = layer.quantized_folded_weight();
    let scale = values(layer.weight_quant.as_ref().unwrap().qparams().scale);
    for c in 0..4 {
        let q = values(quantized.clone().slice([c..c + 1]));
        let f = values(folded.clone().slice([c..c + 1]));
        let mut levels = q.clone();
        levels.sort_by(f32::total_cmp);
        levels.dedup();
        assert!(
            levels.len() <= 15,
            "channel {c}: {} levels on a narrow 4-bit grid",
            levels.len()
        );
        for (a, b) in q.iter().zip(&f) {
            assert!(
                (a - b).abs() <= scale[c] / 2.0 + 1e-6,
                "channel {c}: |{a} - {b}| > scale/2"
            );
        }
    }
}

/// Activation quantizers count their channel axis from the back, so one `QuantLinear` serves
/// `[batch, d]` and `[batch, seq, d]` inputs; per-token scales follow each row.
#[test]
fn quant_linear_quantizes_sequences_per_tensor_per_channel_and_per_token() {
    use quant::{Granularity, QuantSpec, QuantizerConfig};
    for (name, device) in devices() {
        let spec = |g: Granularity| {
            Some(
                QuantizerConfig::new(QuantSpec::new().with_bits(8).with_granularity(g))
                    .with_observer(quant::ObserverKind::current()),
            )
        };
        let x = Tensor::<3>::random([2, 5, 6], Distribution::Normal(0.0, 2.0), &device);
        for (case, granularity, params) in [
            ("per-tensor", Granularity::PerTensor, 1),
            ("per-channel", Granularity::PerChannel { axis: None }, 6),
            ("per-token", Granularity::PerToken, 10),
        ] {
            let layer = QuantLinearConfig::new(6, 4)
                .with_input(spec(granularity.clone()))
                .init(&device);
            let y = layer.forward(x.clone());
            assert_eq!(y.dims(), [2, 5, 4], "{name}/{case}");
            // The quantized input, read back: each row (token) or column (channel) on its own grid.
            let q = layer.input_quant.as_ref().unwrap();
            let xq = values(q.forward(x.clone()));
            let xs = values(x.clone());
            // Symmetric int8 with the tensor's own range: scale = max|x| / 127.5 per group.
            let group_of = |i: usize| match case {
                "per-tensor" => 0,
                "per-channel" => i % 6,
                _ => i / 6,
            };
            let mut bound = vec![0f32; params];
            for (i, v) in xs.iter().enumerate() {
                bound[group_of(i)] = bound[group_of(i)].max(v.abs());
            }
            for (i, (a, e)) in xq.iter().zip(&xs).enumerate() {
                let scale = bound[group_of(i)] / 127.5;
                let code = a / scale;
                assert!(
                    (code - code.round()).abs() < 1e-3,
                    "{name}/{case}: {a} not on its grid"
                );
                assert!(
                    (a - e).abs() <= scale * 0.5 + 1e-5,
                    "{name}/{case}: {a} vs {e}"
                );
            }
            // The same layer takes a 2-D batch.
            let flat = x.clone().reshape([10, 6]);
            assert_eq!(layer.forward(flat).dims(), [10, 4], "{name}/{case}");
        }
        device.sync().unwrap();
    }
}
