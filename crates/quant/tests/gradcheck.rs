//! Finite-difference checks of every fake-quant variant's straight-through gradients.
//!
//! A straight-through estimator is the exact gradient of a *surrogate*: the same function with each
//! rounding replaced by "add the rounding offset measured at the evaluation point" (a constant).
//! We evaluate that surrogate on the host in f64, differentiate it by central differences, and
//! compare with the autodiff gradients of our tensor implementation, on every device.
mod common;

use burn::tensor::{Tensor, TensorData};
use common::{assert_close, devices, values};
use quant::Granularity;

/// Central-difference step. The surrogates are piecewise linear in every parameter, so f64
/// central differences away from the kinks are exact to about 1e-12.
const H: f64 = 1e-4;
/// The agreement we require, from f32 precision: an input gradient is one product (a few ulps);
/// a scale or zero-point gradient is a sum of at most ~60 f32 terms of magnitude ≤ 1, whose
/// rounding error is bounded by N·ε·Σ|terms|, i.e. a few times 1e-6 here. 256 ε (3e-5) absolute
/// plus 64 ε relative is about 100 times tighter than a 0.1% error in a scale gradient.
const ATOL: f32 = 256.0 * f32::EPSILON;
const RTOL: f32 = 64.0 * f32::EPSILON;

fn inputs(n: usize, spread: f64, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * spread
        })
        .collect()
}

/// Drops inputs whose code lands exactly on `qmin` or `qmax`: there the surrogate has a kink
/// (in-range on one side, clipped on the other) and a central difference measures the average of
/// the two one-sided slopes, while the STE convention (PyTorch's too) takes the in-range one.
fn off_grid_ends(
    x: Vec<f64>,
    scale: impl Fn(usize) -> f64,
    zp: f64,
    qmin: f64,
    qmax: f64,
) -> Vec<f64> {
    x.into_iter()
        .enumerate()
        .filter(|&(i, v)| {
            let code = round_half_even(v / scale(i) + zp);
            code != qmin && code != qmax
        })
        .map(|(_, v)| v)
        .collect()
}

fn clamp(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 {
        2.0 * (v / 2.0).round()
    } else {
        r
    }
}

/// `Σ dy · f̃` and its central differences with respect to the entries of `params`.
fn fd_grad(params: &[f64], loss: &dyn Fn(&[f64]) -> f64) -> Vec<f32> {
    (0..params.len())
        .map(|i| {
            let mut plus = params.to_vec();
            let mut minus = params.to_vec();
            plus[i] += H;
            minus[i] -= H;
            ((loss(&plus) - loss(&minus)) / (2.0 * H)) as f32
        })
        .collect()
}

fn tensor(v: &[f64], device: &burn::tensor::Device) -> Tensor<1> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device)
}

#[test]
fn fixed_scale_ste_matches_surrogate() {
    let (s, zp, qmin, qmax) = (0.1f64, 3.0f64, -8.0f64, 7.0f64);
    let x = off_grid_ends(inputs(40, 1.5, 1), |_| s, zp, qmin, qmax);
    let dy = inputs(x.len(), 1.0, 2);
    let offsets: Vec<f64> = x.iter().map(|&v| round_half_even(v / s) - v / s).collect();
    let loss = |xs: &[f64]| -> f64 {
        xs.iter()
            .zip(&offsets)
            .zip(&dy)
            .map(|((&v, &r), &g)| g * (clamp(v / s + r + zp, qmin, qmax) - zp) * s)
            .sum()
    };
    let expected = fd_grad(&x, &loss);
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        let xt = tensor(&x, &ad).require_grad();
        let y = quant::fake_quantize_per_tensor_affine(
            xt.clone(),
            s as f32,
            zp as i32,
            qmin as i32,
            qmax as i32,
        );
        let grads = (y * tensor(&dy, &ad)).sum().backward();
        assert_close(
            name,
            "dx",
            &values(xt.grad(&grads).unwrap()),
            &expected,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn lsq_gradients_match_surrogate() {
    let (qmin, qmax) = (0.0f64, 15.0f64);
    let (s0, zp0) = (0.17f64, 6.0f64);
    let x = off_grid_ends(inputs(60, 2.0, 3), |_| s0, zp0, qmin, qmax);
    let dy = inputs(x.len(), 1.0, 4);
    let offsets: Vec<f64> = x
        .iter()
        .map(|&v| round_half_even(v / s0 + zp0) - (v / s0 + zp0))
        .collect();
    // Surrogate in (x..., s, zp); the zero point's own rounding is frozen as well.
    let loss = |p: &[f64]| -> f64 {
        let (xs, s, zp) = (&p[..x.len()], p[x.len()], p[x.len() + 1]);
        xs.iter()
            .zip(&offsets)
            .zip(&dy)
            .map(|((&v, &r), &g)| g * (clamp(v / s + zp + r, qmin, qmax) - zp) * s)
            .sum()
    };
    let mut params = x.clone();
    params.extend([s0, zp0]);
    let expected = fd_grad(&params, &loss);
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        let xt = tensor(&x, &ad).require_grad();
        let st = tensor(&[s0], &ad).require_grad();
        let zt = tensor(&[zp0], &ad).require_grad();
        let y = quant::fake_quantize_learnable(
            xt.clone(),
            st.clone(),
            zt.clone(),
            &Granularity::PerTensor,
            0,
            15,
            1.0,
        );
        let grads = (y * tensor(&dy, &ad)).sum().backward();
        let mut actual = values(xt.grad(&grads).unwrap());
        actual.extend(values(st.grad(&grads).unwrap()));
        actual.extend(values(zt.grad(&grads).unwrap()));
        assert_close(name, "d(x, s, zp)", &actual, &expected, ATOL, RTOL);
    }
}

#[test]
fn lsq_per_channel_gradients_match_surrogate() {
    // [rows, channels] with one scale per channel (axis 1), symmetric int4.
    let (rows, channels, qmin, qmax) = (6usize, 3usize, -8.0f64, 7.0f64);
    let s0 = [0.05f64, 0.11, 0.2];
    // Replace grid-end inputs by mid-range ones so every channel keeps `rows` entries.
    let x: Vec<f64> = inputs(rows * channels, 1.0, 5)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let code = round_half_even(v / s0[i % channels]);
            if code == qmin || code == qmax {
                0.3 * s0[i % channels]
            } else {
                v
            }
        })
        .collect();
    let dy = inputs(rows * channels, 1.0, 6);
    let offsets: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = s0[i % channels];
            round_half_even(v / s) - v / s
        })
        .collect();
    let loss = |p: &[f64]| -> f64 {
        let (xs, s) = (&p[..x.len()], &p[x.len()..]);
        xs.iter()
            .enumerate()
            .map(|(i, &v)| {
                let sc = s[i % channels];
                dy[i] * clamp(v / sc + offsets[i], qmin, qmax) * sc
            })
            .sum()
    };
    let mut params = x.clone();
    params.extend(s0);
    let expected = fd_grad(&params, &loss);
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        let xt: Tensor<2> = tensor(&x, &ad)
            .reshape([rows, channels])
            .detach()
            .require_grad();
        let st = tensor(&s0, &ad).require_grad();
        let zt = tensor(&[0.0; 3], &ad);
        let granularity = Granularity::PerChannel { axis: Some(1) };
        let y =
            quant::fake_quantize_learnable(xt.clone(), st.clone(), zt, &granularity, -8, 7, 1.0);
        let dyt: Tensor<2> = tensor(&dy, &ad).reshape([rows, channels]);
        let grads = (y * dyt).sum().backward();
        let mut actual = values(xt.grad(&grads).unwrap());
        actual.extend(values(st.grad(&grads).unwrap()));
        assert_close(name, "d(x, s)", &actual, &expected, ATOL, RTOL);
    }
}

#[test]
fn pact_gradients_match_surrogate() {
    for signed in [false, true] {
        let bits = 3u32;
        let levels = if signed { 3.0 } else { 7.0 };
        let x = inputs(50, 2.5, 7);
        let dy = inputs(50, 1.0, 8);
        let a0 = 1.3f64;
        let clip = |v: f64, a: f64| {
            if signed {
                clamp(v, -a, a)
            } else {
                clamp(v, 0.0, a)
            }
        };
        let offsets: Vec<f64> = x
            .iter()
            .map(|&v| {
                let c = clip(v, a0);
                round_half_even(c / (a0 / levels)) * (a0 / levels) - c
            })
            .collect();
        let loss = |p: &[f64]| -> f64 {
            let a = p[x.len()];
            p[..x.len()]
                .iter()
                .zip(&offsets)
                .zip(&dy)
                .map(|((&v, &r), &g)| g * (clip(v, a) + r))
                .sum()
        };
        let mut params = x.clone();
        params.push(a0);
        let expected = fd_grad(&params, &loss);
        for (name, device) in devices() {
            let ad = device.clone().autodiff();
            let xt = tensor(&x, &ad).require_grad();
            let at = tensor(&[a0], &ad).require_grad();
            let y = quant::pact(xt.clone(), at.clone(), bits, signed);
            let grads = (y * tensor(&dy, &ad)).sum().backward();
            let mut actual = values(xt.grad(&grads).unwrap());
            actual.extend(values(at.grad(&grads).unwrap()));
            assert_close(
                &format!("{name}/signed={signed}"),
                "d(x, alpha)",
                &actual,
                &expected,
                ATOL,
                RTOL,
            );
        }
    }
}

#[test]
fn grad_scale_scales_only_the_gradient() {
    for (name, device) in devices() {
        let ad = device.clone().autodiff();
        let s = Tensor::<1>::from_floats([0.5, 2.0], &ad).require_grad();
        let y = quant::grad_scale(s.clone(), 0.25);
        assert_close(name, "forward", &values(y.clone()), &[0.5, 2.0], 0.0, 0.0);
        let grads = (y * Tensor::<1>::from_floats([1.0, 3.0], &ad))
            .sum()
            .backward();
        assert_close(
            name,
            "grad",
            &values(s.grad(&grads).unwrap()),
            &[0.25, 0.75],
            1e-7,
            0.0,
        );
    }
}
