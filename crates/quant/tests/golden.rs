//! Forward values and gradients against PyTorch, on every compiled-in device.
//!
//! The expected values come from `golden/gen_fake_quant.py` (PyTorch's
//! `fake_quantize_per_tensor_affine`, `fake_quantize_per_channel_affine`,
//! `_fake_quantize_learnable_per_{tensor,channel}_affine`, `MinMaxObserver`,
//! `PerChannelMinMaxObserver`, and a reference PACT); the torch version is stored in the JSON.
//! The distillation loss is pinned to `golden/gen_distillation.py` (Hinton's soft targets as
//! PyTorch's `kl_div(..., log_target=True) · T²`, mixed with cross-entropy), the entropy observer
//! to `golden/gen_entropy.py` (NVIDIA pytorch-quantization's `_compute_amax_entropy`).
mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, devices, values};
use quant::{Granularity, QuantSpec};
use serde_json::Value;

/// Outputs are quantized values: they may differ only by float rounding of `code · scale`.
const FORWARD_ATOL: f32 = 1e-6;
/// Gradients are sums of products; allow float reassociation across backends.
const GRAD_ATOL: f32 = 1e-5;
const GRAD_RTOL: f32 = 1e-5;
/// Scale gradients sum over up to 120 elements.
const SCALE_GRAD_ATOL: f32 = 1e-4;

fn cases() -> Vec<Value> {
    let text = include_str!("golden/fake_quant.json");
    let json: Value = serde_json::from_str(text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn shape(case: &Value) -> Vec<usize> {
    case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

fn tensor2(case: &Value, key: &str, device: &Device) -> Tensor<2> {
    let s = shape(case);
    let flat: Vec<f32> = floats(&case[key]);
    let rows = s[0];
    let cols = flat.len() / rows;
    Tensor::from_data(TensorData::new(flat, [rows, cols]), device)
}

fn vector(case: &Value, key: &str, device: &Device) -> Tensor<1> {
    Tensor::from_floats(floats(&case[key]).as_slice(), device)
}

fn int(case: &Value, key: &str) -> i32 {
    case[key].as_i64().unwrap() as i32
}

/// Runs `f` on an autodiff copy of the case's `x` (as `[d0, rest]`, or its real shape for rank 4),
/// with the case's upstream gradient, and returns `(y, dx)`.
fn check_forward_and_dx(
    name: &str,
    case: &Value,
    device: &Device,
    y_and_x: (Tensor<2>, Tensor<2>),
) {
    let (y, x) = y_and_x;
    let dy = tensor2(case, "dy", device);
    let grads = (y.clone() * dy).sum().backward();
    assert_close(
        name,
        "y",
        &values(y),
        &floats(&case["y"]),
        FORWARD_ATOL,
        0.0,
    );
    assert_close(
        name,
        "dx",
        &values(x.grad(&grads).unwrap()),
        &floats(&case["dx"]),
        GRAD_ATOL,
        GRAD_RTOL,
    );
}

#[test]
fn fixed_fake_quantize_matches_pytorch() {
    for (device_name, device) in devices() {
        let ad = device.clone().autodiff();
        for case in cases()
            .iter()
            .filter(|c| c["op"] == "per_tensor_affine" || c["op"] == "per_channel_affine")
        {
            let name = format!("{device_name}/{}", case["name"].as_str().unwrap());
            let x = tensor2(case, "x", &ad).require_grad();
            let (qmin, qmax) = (int(case, "qmin"), int(case, "qmax"));
            let y = if case["op"] == "per_tensor_affine" {
                let scale = floats(&case["scale"])[0];
                let zp = case["zero_point"][0].as_i64().unwrap() as i32;
                quant::fake_quantize_per_tensor_affine(x.clone(), scale, zp, qmin, qmax)
            } else {
                // The rank-4 case is stored flat; view it in its real shape, then flatten back.
                let s = shape(case);
                let axis = case["axis"].as_u64().unwrap() as usize;
                let scale = vector(case, "scale", &ad);
                let zp = vector(case, "zero_point", &ad);
                if s.len() == 4 {
                    let x4: Tensor<4> = x.clone().reshape([s[0], s[1], s[2], s[3]]);
                    let y4 =
                        quant::fake_quantize_per_channel_affine(x4, scale, zp, axis, qmin, qmax);
                    y4.reshape([s[0], s[1] * s[2] * s[3]])
                } else {
                    quant::fake_quantize_per_channel_affine(x.clone(), scale, zp, axis, qmin, qmax)
                }
            };
            check_forward_and_dx(&name, case, &ad, (y, x));
        }
    }
}

#[test]
fn learnable_fake_quantize_matches_pytorch() {
    for (device_name, device) in devices() {
        let ad = device.clone().autodiff();
        for case in cases()
            .iter()
            .filter(|c| c["op"].as_str().unwrap().starts_with("learnable"))
        {
            let name = format!("{device_name}/{}", case["name"].as_str().unwrap());
            let x = tensor2(case, "x", &ad).require_grad();
            let scale = vector(case, "scale", &ad).require_grad();
            let zp = vector(case, "zero_point", &ad).require_grad();
            let granularity = match case["axis"].as_u64() {
                None => Granularity::PerTensor,
                Some(axis) => Granularity::PerChannel {
                    axis: Some(axis as usize),
                },
            };
            let factor = case["grad_factor"].as_f64().unwrap();
            let (qmin, qmax) = (int(case, "qmin"), int(case, "qmax"));
            let y = quant::fake_quantize_learnable(
                x.clone(),
                scale.clone(),
                zp.clone(),
                &granularity,
                qmin,
                qmax,
                factor,
            );
            let dy = tensor2(case, "dy", &ad);
            let grads = (y.clone() * dy).sum().backward();
            assert_close(
                &name,
                "y",
                &values(y),
                &floats(&case["y"]),
                FORWARD_ATOL,
                0.0,
            );
            assert_close(
                &name,
                "dx",
                &values(x.grad(&grads).unwrap()),
                &floats(&case["dx"]),
                GRAD_ATOL,
                GRAD_RTOL,
            );
            let dscale = values(scale.grad(&grads).unwrap());
            assert_close(
                &name,
                "dscale",
                &dscale,
                &floats(&case["dscale"]),
                SCALE_GRAD_ATOL,
                1e-4,
            );
            let dzp = values(zp.grad(&grads).unwrap());
            assert_close(
                &name,
                "dzero_point",
                &dzp,
                &floats(&case["dzero_point"]),
                SCALE_GRAD_ATOL,
                1e-4,
            );
        }
    }
}

#[test]
fn pact_matches_reference() {
    for (device_name, device) in devices() {
        let ad = device.clone().autodiff();
        for case in cases().iter().filter(|c| c["op"] == "pact") {
            let name = format!("{device_name}/{}", case["name"].as_str().unwrap());
            let x = tensor2(case, "x", &ad).require_grad();
            let alpha = vector(case, "alpha", &ad).require_grad();
            let bits = case["bits"].as_u64().unwrap() as u32;
            let y = quant::pact(
                x.clone(),
                alpha.clone(),
                bits,
                case["signed"].as_bool().unwrap(),
            );
            let dy = tensor2(case, "dy", &ad);
            let grads = (y.clone() * dy).sum().backward();
            assert_close(
                &name,
                "y",
                &values(y),
                &floats(&case["y"]),
                FORWARD_ATOL,
                1e-6,
            );
            assert_close(
                &name,
                "dx",
                &values(x.grad(&grads).unwrap()),
                &floats(&case["dx"]),
                GRAD_ATOL,
                GRAD_RTOL,
            );
            let dalpha = values(alpha.grad(&grads).unwrap());
            assert_close(
                &name,
                "dalpha",
                &dalpha,
                &floats(&case["dalpha"]),
                SCALE_GRAD_ATOL,
                1e-4,
            );
        }
    }
}

#[test]
fn observer_qparams_match_pytorch() {
    for (device_name, device) in devices() {
        for case in cases().iter().filter(|c| c["op"] == "observer") {
            let name = format!("{device_name}/{}", case["name"].as_str().unwrap());
            let granularity = match case["axis"].as_u64() {
                None => Granularity::PerTensor,
                Some(axis) => Granularity::PerChannel {
                    axis: Some(axis as usize),
                },
            };
            let spec = QuantSpec::new()
                .with_signed(case["signed"].as_bool().unwrap())
                .with_symmetric(case["symmetric"].as_bool().unwrap())
                .with_granularity(granularity.clone());
            let s = shape(case);
            let x: Tensor<2> = Tensor::from_data(
                TensorData::new(floats(&case["x"]), [s[0], s.get(1).copied().unwrap_or(1)]),
                &device,
            );
            let layout = quant::ParamLayout::new(&x.dims(), &granularity);
            let observer =
                quant::Observer::new(quant::ObserverKind::MinMax, layout.num_params(), &device);
            observer.observe(layout.to_view(x), &layout, &spec);
            let qp = observer.qparams(&spec);
            assert_close(
                &name,
                "scale",
                &values(qp.scale),
                &floats(&case["scale"]),
                0.0,
                1e-6,
            );
            assert_close(
                &name,
                "zero_point",
                &values(qp.zero_point),
                &floats(&case["zero_point"]),
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn distillation_loss_matches_pytorch() {
    let json: Value = serde_json::from_str(include_str!("golden/distillation.json")).unwrap();
    for (device_name, device) in devices() {
        let device = device.autodiff();
        for case in json["cases"].as_array().unwrap() {
            let name = format!("{device_name}/{}", case["name"].as_str().unwrap());
            let (items, classes) = (
                case["items"].as_u64().unwrap() as usize,
                case["classes"].as_u64().unwrap() as usize,
            );
            let matrix = |key: &str| {
                Tensor::<2>::from_data(
                    TensorData::new(floats(&case[key]), [items, classes]),
                    &device,
                )
            };
            let student = matrix("student").require_grad();
            let counted = (!case["counted"].is_null()).then(|| vector(case, "counted", &device));
            // The task loss the reference mixes in: cross-entropy over the counted items.
            let targets: Vec<usize> = case["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as usize)
                .collect();
            let one_hot: Vec<f32> = targets
                .iter()
                .flat_map(|&t| (0..classes).map(move |c| f32::from(u8::from(c == t))))
                .collect();
            let one_hot =
                Tensor::<2>::from_data(TensorData::new(one_hot, [items, classes]), &device);
            let per_item = (burn::tensor::activation::log_softmax(student.clone(), 1) * one_hot)
                .sum_dim(1)
                .reshape([items])
                .neg();
            let task = match &counted {
                Some(w) => (per_item * w.clone()).sum().div(w.clone().sum()),
                None => per_item.mean(),
            };
            let setting = quant::qat::Distillation::new(
                case["weight"].as_f64().unwrap(),
                case["temperature"].as_f64().unwrap(),
            )
            .unwrap();
            let soft = quant::qat::soft_target_loss(
                student.clone(),
                matrix("teacher"),
                counted.clone(),
                setting.temperature,
            );
            assert_close(
                &name,
                "soft",
                &values(soft),
                &[case["soft"].as_f64().unwrap() as f32],
                1e-5,
                1e-5,
            );
            let loss = setting.loss(task, student.clone(), matrix("teacher"), counted);
            assert_close(
                &name,
                "loss",
                &values(loss.clone()),
                &[case["loss"].as_f64().unwrap() as f32],
                1e-5,
                1e-5,
            );
            let grad = student.grad(&loss.backward()).unwrap();
            assert_close(
                &name,
                "student grad",
                &values(grad),
                &floats(&case["student_grad"]),
                GRAD_ATOL,
                GRAD_RTOL,
            );
        }
    }
}

/// Entropy calibration against NVIDIA pytorch-quantization's search (`golden/gen_entropy.py`):
/// on its histograms the same bin exactly; from raw values (our binning against `torch.histc`'s
/// float32 one) the same threshold within two bins.
#[test]
fn entropy_calibration_matches_pytorch_quantization() {
    let json: Value = serde_json::from_str(include_str!("golden/entropy.json")).unwrap();
    for case in json["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let bits = case["bits"].as_u64().unwrap() as u32;
        let unsigned = case["unsigned"].as_bool().unwrap();
        let bins = case["bins"].as_u64().unwrap() as usize;
        let bin = case["bin"].as_u64().unwrap() as usize;
        if let Some(histogram) = case["histogram"].as_array() {
            let histogram: Vec<f64> = histogram.iter().map(|c| c.as_f64().unwrap()).collect();
            let levels = 1usize << (bits - 1 + u32::from(unsigned));
            assert_eq!(quant::entropy_threshold(&histogram, levels), bin, "{name}");
        } else {
            let values = floats(&case["values"]);
            let amax = quant::entropy_amax(&values, bins, bits, unsigned);
            let expected = case["amax"].as_f64().unwrap() as f32;
            let width = values.iter().fold(0f32, |m, v| m.max(v.abs())) / bins as f32;
            assert!(
                (amax - expected).abs() <= 2.0 * width,
                "{name}: {amax} vs {expected} (bin width {width})"
            );
        }
    }
}
